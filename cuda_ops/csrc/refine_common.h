// Depth refinement: the per-element arithmetic of the model-point visibility test and of the lookup-grid nearest
// neighbour, shared by the CPU operators (refine_cpu.cpp) and the CUDA kernels (refine_cuda.cu). The PyTorch
// reference (posecnn_core/refine/visibility.py::_visible_torch, neighbours.py::ModelGrid._nearest_torch) performs the
// same float32 operations in the same order, so all three give bit-identical answers.
//
// Visibility of model points s [N, 3] (camera frame) of one element (a splatting z-buffer):
//   ok = valid and z > 1e-3; (u, v) = ((fx·x + s·y)/z + px, fy·y/z + py) for the ok points;
//   span_u = max(max u − min u, 0), likewise span_v; n = max(#ok, 1);
//   cell = max(max(√(5·span_u·span_v/n), 1), max(span_u, span_v)/(G − 1)) with G = kVisGrid;
//   each ok point falls in cell (clamp(floor((u − min u)/cell), 0, G − 1), likewise v); zmin = the cell's least z;
//   visible = ok and z ≤ (zmin + margin) + cell·zmin/fx.
// Nearest candidate of an observed point q through a model's lookup grid (origin, cell size, cell counts, first
// table row): the point moved into the object frame, local_j = ((q−t)_0·R_0j + (q−t)_1·R_1j) + (q−t)_2·R_2j, its
// cell clamp(floor((local − origin)/cell), 0, dims − 1); of that cell's candidates the first one with the least
// squared distance ((dx² + dy²) + dz²) among those allowed (s_ok); none allowed: the first candidate and distance inf.
// Normal equations of one robust Gauss-Newton ICP step (icp.py::_normal_equations_torch) for one element: per
// observed point q with matched model point m, weight w, normal n (used when normal_ok) about the centroid c:
//   mc = m − c, r = m − q (float32 differences, then float64), w_pp = w·point_weight (float32 product);
//   point-to-point rows: H[:3,:3] += w_pp·(|mc|² I − mc mcᵀ), H[:3,3:] = [Σ w_pp mc]×, H[3:,:3] = −[Σ w_pp mc]×,
//   H[3:,3:] = Σ w_pp · I; g += (Σ w_pp mc × r, Σ w_pp r);
//   point-to-plane rows (plane): J = (mc × n, n), H += w·J Jᵀ, g += w·J (n·r) for the points with a normal.
// Sums run in float64 in point order; the PyTorch reference sums in its own order (equal to ~1e-12 relative).
// Every product, sum and quotient is rounded on its own (no fused multiply-add): IEEE float32 as PyTorch computes.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define REFINE_HD __host__ __device__ __forceinline__
#else
#define REFINE_HD inline
#endif

namespace posecnn {
namespace refine {

constexpr int64_t kVisGrid = 128;  // cells per side of the visibility z-buffer at most (visibility.py: _VIS_GRID)
constexpr float kMinDepth = 1e-3f;  // points closer than this (or behind the camera) are never visible

REFINE_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
REFINE_HD float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
REFINE_HD float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
REFINE_HD float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
REFINE_HD float sqrt_rn(float a) {
#ifdef __CUDA_ARCH__
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
REFINE_HD float max_of(float a, float b) { return a < b ? b : a; }
REFINE_HD float min_of(float a, float b) { return b < a ? b : a; }

// Intrinsics as the projection reads them: fx, skew, px, fy, py (row-major K [3, 3] in float32).
struct Camera {
  float fx, s, px, fy, py;
};

REFINE_HD Camera camera_of(const float* K) { return Camera{K[0], K[1], K[2], K[4], K[5]}; }

REFINE_HD bool in_front(bool valid, float z) { return valid && z > kMinDepth; }

REFINE_HD float project_u(const Camera& c, float x, float y, float z) {
  return add_rn(div_rn(add_rn(mul_rn(c.fx, x), mul_rn(c.s, y)), z), c.px);
}
REFINE_HD float project_v(const Camera& c, float y, float z) { return add_rn(div_rn(mul_rn(c.fy, y), z), c.py); }

// Side of a z-buffer cell in pixels for an element whose n in-front points span span_u × span_v pixels: about
// four camera-facing points per cell, and at most kVisGrid cells per side.
REFINE_HD float splat_cell(float span_u, float span_v, float n) {
  const float area = div_rn(mul_rn(mul_rn(5.0f, span_u), span_v), n);
  const float cell = max_of(sqrt_rn(area), 1.0f);
  return max_of(cell, div_rn(max_of(span_u, span_v), static_cast<float>(kVisGrid - 1)));
}

// z-buffer column (or row) of a point at pixel coordinate u, the element's least coordinate being lo.
REFINE_HD int64_t splat_index(float u, float lo, float cell) {
  float f = floorf(div_rn(sub_rn(u, lo), cell));
  f = max_of(f, 0.0f);
  f = min_of(f, static_cast<float>(kVisGrid - 1));
  return static_cast<int64_t>(f);
}

// A point at depth z is visible when it lies within margin plus one cell's footprint (at the cell's least depth
// zmin, a 45 degree slope) of the nearest point splatted into its cell.
REFINE_HD bool visible_at(float z, float zmin, float margin, float cell, float fx) {
  const float footprint = div_rn(mul_rn(cell, zmin), fx);
  return z <= add_rn(add_rn(zmin, margin), footprint);
}

// Lookup grid of one model, as neighbours.ModelGrid stores it (meta row: origin xyz, cell size, cell counts xyz,
// first table row; float64, read here as float32 / int64 like the PyTorch reference).
struct Grid {
  float origin[3];
  float cell;
  int64_t dims[3];
  int64_t offset;
};

REFINE_HD Grid grid_of(const double* meta) {
  Grid g;
  for (int j = 0; j < 3; ++j) {
    g.origin[j] = static_cast<float>(meta[j]);
    g.dims[j] = static_cast<int64_t>(meta[4 + j]);
  }
  g.cell = static_cast<float>(meta[3]);
  g.offset = static_cast<int64_t>(meta[7]);
  return g;
}

// Table row of the grid cell holding observed point q (camera frame) for the model at pose (R row-major, t):
// q is moved into the object frame, Rᵀ(q − t); cells outside the grid clamp to the nearest border cell.
REFINE_HD int64_t grid_row(const Grid& g, const float* q, const float* R, const float* t) {
  const float d0 = sub_rn(q[0], t[0]), d1 = sub_rn(q[1], t[1]), d2 = sub_rn(q[2], t[2]);
  int64_t ijk[3];
  for (int j = 0; j < 3; ++j) {
    const float local = add_rn(add_rn(mul_rn(d0, R[j]), mul_rn(d1, R[3 + j])), mul_rn(d2, R[6 + j]));
    float f = floorf(div_rn(sub_rn(local, g.origin[j]), g.cell));
    f = max_of(f, 0.0f);
    f = min_of(f, static_cast<float>(g.dims[j] - 1));
    ijk[j] = static_cast<int64_t>(f);
  }
  return (ijk[0] * g.dims[1] + ijk[1]) * g.dims[2] + ijk[2] + g.offset;
}

// Of the C candidates (indices into the N model points s) the first nearest to q among those allowed (s_ok);
// writes its index and distance (the first candidate and inf when none is allowed). A candidate outside [0, N)
// is never allowed (memory safety; the grids built by neighbours.ModelGrid hold none). Branch-free selects: whether
// a candidate is allowed and whether it is nearer are data-dependent coin flips that a branch would mispredict.
REFINE_HD void nearest_candidate(const int64_t* cand, int64_t C, const float* s, const bool* s_ok, int64_t N,
                                 const float* q, int64_t* index, float* distance) {
  float best = INFINITY;
  int64_t pick = 0;
  if (N > 0) {
    for (int64_t c = 0; c < C; ++c) {
      const int64_t p = cand[c];
      const bool inside = (p >= 0) & (p < N);
      const int64_t pp = inside ? p : 0;
      const bool allowed = inside & s_ok[pp];
      const float dx = sub_rn(s[3 * pp], q[0]), dy = sub_rn(s[3 * pp + 1], q[1]), dz = sub_rn(s[3 * pp + 2], q[2]);
      const float d2 = allowed ? add_rn(add_rn(mul_rn(dx, dx), mul_rn(dy, dy)), mul_rn(dz, dz)) : INFINITY;
      const bool nearer = d2 < best;
      best = nearer ? d2 : best;
      pick = nearer ? c : pick;
    }
  }
  *index = cand[pick];
  *distance = sqrt_rn(best);
}

// Accumulates the normal equations of element points [0, M) into H (6×6 row-major) and g (6), both float64.
REFINE_HD void icp_normal_equations(const float* q, const float* m, const float* normals, const bool* normal_ok,
                                    const float* w, const float* c, float point_weight, bool plane, int64_t M,
                                    double* H, double* g) {
  double sw = 0.0, swm[3] = {0.0, 0.0, 0.0}, mm[9] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  double gr[3] = {0.0, 0.0, 0.0}, gt[3] = {0.0, 0.0, 0.0}, Hp[36], gp[6];
  for (int k = 0; k < 36; ++k) Hp[k] = 0.0;
  for (int k = 0; k < 6; ++k) gp[k] = 0.0;
  for (int64_t i = 0; i < M; ++i) {
    const float wi = w[i];
    if (wi == 0.0f) continue;  // adds nothing (all terms finite)
    const float* mi = m + 3 * i;
    const float* qi = q + 3 * i;
    double mc[3], r[3];
    for (int j = 0; j < 3; ++j) {
      mc[j] = static_cast<double>(sub_rn(mi[j], c[j]));
      r[j] = static_cast<double>(sub_rn(mi[j], qi[j]));
    }
    const double wpp = static_cast<double>(mul_rn(wi, point_weight));
    const double wmc[3] = {wpp * mc[0], wpp * mc[1], wpp * mc[2]};
    sw += wpp;
    for (int j = 0; j < 3; ++j) {
      swm[j] += wmc[j];
      gt[j] += wpp * r[j];
      for (int k = 0; k < 3; ++k) mm[3 * j + k] += wmc[j] * mc[k];
    }
    gr[0] += wmc[1] * r[2] - wmc[2] * r[1];
    gr[1] += wmc[2] * r[0] - wmc[0] * r[2];
    gr[2] += wmc[0] * r[1] - wmc[1] * r[0];
    if (plane && normal_ok[i]) {
      const float* ni = normals + 3 * i;
      const double n[3] = {ni[0], ni[1], ni[2]};
      const double J[6] = {mc[1] * n[2] - mc[2] * n[1], mc[2] * n[0] - mc[0] * n[2], mc[0] * n[1] - mc[1] * n[0],
                           n[0], n[1], n[2]};
      const double wn = static_cast<double>(wi);
      const double nr = n[0] * r[0] + n[1] * r[1] + n[2] * r[2];
      for (int j = 0; j < 6; ++j) {
        const double wj = wn * J[j];
        gp[j] += wj * nr;
        for (int k = 0; k < 6; ++k) Hp[6 * j + k] += wj * J[k];
      }
    }
  }
  const double tr = mm[0] + mm[4] + mm[8];
  for (int j = 0; j < 3; ++j) {
    for (int k = 0; k < 3; ++k) {
      H[6 * j + k] = (j == k ? tr : 0.0) - mm[3 * j + k];
      H[6 * (3 + j) + 3 + k] = j == k ? sw : 0.0;
    }
  }
  // [swm]x in H[:3, 3:], its negative in H[3:, :3]
  const double sk[9] = {0.0, -swm[2], swm[1], swm[2], 0.0, -swm[0], -swm[1], swm[0], 0.0};
  for (int j = 0; j < 3; ++j) {
    for (int k = 0; k < 3; ++k) {
      H[6 * j + 3 + k] = sk[3 * j + k];
      H[6 * (3 + j) + k] = -sk[3 * j + k];
    }
  }
  for (int j = 0; j < 3; ++j) {
    g[j] = gr[j];
    g[3 + j] = gt[j];
  }
  for (int k = 0; k < 36; ++k) H[k] += Hp[k];
  for (int k = 0; k < 6; ++k) g[k] += gp[k];
}

}  // namespace refine
}  // namespace posecnn
