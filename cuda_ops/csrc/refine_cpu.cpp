// Depth-refinement operators on the CPU: posecnn::model_visibility (which model points the camera sees, a splatting
// z-buffer per element) and posecnn::model_grid_nearest (nearest allowed model point of each observed point through
// a lookup grid). The per-element arithmetic is refine_common.h's, shared with the CUDA kernels; the PyTorch
// reference (posecnn_core/refine) computes the same float32 operations in the same order.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "refine_common.h"
#include "refine_ops.h"

namespace posecnn {
namespace refine {
namespace {

// One element: in-front flags, the splat cell and each point's z-buffer cell, then the test against the least
// depth of the cell. Scratch vectors are the calling thread's.
void visibility_element(const float* s, const bool* valid, int64_t N, const Camera& cam, float margin, bool* out,
                        std::vector<float>& zbuf, std::vector<int32_t>& cells) {
  const float big = std::numeric_limits<float>::max();
  float umin = big, vmin = big, umax = -big, vmax = -big;
  int64_t count = 0;
  for (int64_t n = 0; n < N; ++n) {
    const float* p = s + 3 * n;
    if (!in_front(valid[n], p[2])) continue;
    const float u = project_u(cam, p[0], p[1], p[2]), v = project_v(cam, p[1], p[2]);
    umin = min_of(umin, u);
    umax = max_of(umax, u);
    vmin = min_of(vmin, v);
    vmax = max_of(vmax, v);
    ++count;
  }
  if (count == 0) {
    std::fill(out, out + N, false);
    return;
  }
  const float span_u = max_of(sub_rn(umax, umin), 0.0f), span_v = max_of(sub_rn(vmax, vmin), 0.0f);
  const float cell = splat_cell(span_u, span_v, static_cast<float>(count));
  cells.assign(N, -1);
  int64_t gv = 1;
  for (int64_t n = 0; n < N; ++n) {
    const float* p = s + 3 * n;
    if (!in_front(valid[n], p[2])) continue;
    const int64_t cu = splat_index(project_u(cam, p[0], p[1], p[2]), umin, cell);
    const int64_t cv = splat_index(project_v(cam, p[1], p[2]), vmin, cell);
    gv = std::max(gv, cv + 1);
    cells[n] = static_cast<int32_t>(cv * kVisGrid + cu);
  }
  // The z-buffer indexed by cv * kVisGrid + cu; only its first gv rows are touched.
  zbuf.assign(static_cast<size_t>(gv * kVisGrid), INFINITY);
  for (int64_t n = 0; n < N; ++n) {
    if (cells[n] >= 0) zbuf[cells[n]] = min_of(zbuf[cells[n]], s[3 * n + 2]);
  }
  for (int64_t n = 0; n < N; ++n) {
    out[n] = cells[n] >= 0 && visible_at(s[3 * n + 2], zbuf[cells[n]], margin, cell, cam.fx);
  }
}

at::Tensor visibility_cpu(const at::Tensor& points_in, const at::Tensor& valid_in, const at::Tensor& K_in,
                          double margin) {
  check_visibility_args(points_in, valid_in, K_in, at::kCPU);
  const at::Tensor points = points_in.contiguous(), valid = valid_in.contiguous(), K = K_in.contiguous();
  const int64_t B = points.size(0), N = points.size(1);
  at::Tensor out = at::empty({B, N}, valid.options());
  if (B == 0 || N == 0) return out;
  const Camera cam = camera_of(K.data_ptr<float>());
  const float m = static_cast<float>(margin);
  const float* s = points.data_ptr<float>();
  const bool* ok = valid.data_ptr<bool>();
  bool* o = out.data_ptr<bool>();
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> zbuf;
    std::vector<int32_t> cells;
    for (int64_t b = b0; b < b1; ++b) {
      visibility_element(s + 3 * N * b, ok + N * b, N, cam, m, o + N * b, zbuf, cells);
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> grid_nearest_cpu(const at::Tensor& q_in, const at::Tensor& s_in,
                                                    const at::Tensor& s_ok_in, const at::Tensor& R_in,
                                                    const at::Tensor& t_in, const at::Tensor& meta_in,
                                                    const at::Tensor& table_in) {
  check_nearest_args(q_in, s_in, s_ok_in, R_in, t_in, meta_in, table_in, at::kCPU);
  const at::Tensor q = q_in.contiguous(), s = s_in.contiguous(), s_ok = s_ok_in.contiguous();
  const at::Tensor R = R_in.contiguous(), t = t_in.contiguous(), meta = meta_in.contiguous();
  const at::Tensor table = table_in.contiguous();
  const int64_t B = q.size(0), M = q.size(1), N = s.size(1), T = table.size(0), C = table.size(1);
  check_grid_meta(meta.data_ptr<double>(), B, T);
  std::vector<Grid> grids(B);
  for (int64_t b = 0; b < B; ++b) grids[b] = grid_of(meta.data_ptr<double>() + 8 * b);
  at::Tensor index = at::empty({B, M}, q.options().dtype(at::kLong));
  at::Tensor dist = at::empty({B, M}, q.options());
  if (B == 0 || M == 0) return {index, dist};
  const float* qp = q.data_ptr<float>();
  const float* sp = s.data_ptr<float>();
  const bool* okp = s_ok.data_ptr<bool>();
  const float* Rp = R.data_ptr<float>();
  const float* tp = t.data_ptr<float>();
  const int64_t* tab = table.data_ptr<int64_t>();
  int64_t* ip = index.data_ptr<int64_t>();
  float* dp = dist.data_ptr<float>();
  at::parallel_for(0, B * M, 256, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / M;
      const float* qi = qp + 3 * i;
      const int64_t row = grid_row(grids[b], qi, Rp + 9 * b, tp + 3 * b);
      nearest_candidate(tab + C * row, C, sp + 3 * N * b, okp + N * b, N, qi, ip + i, dp + i);
    }
  });
  return {index, dist};
}

std::tuple<at::Tensor, at::Tensor> normal_equations_cpu(const at::Tensor& q_in, const at::Tensor& m_in,
                                                        const at::Tensor& normals_in, const at::Tensor& normal_ok_in,
                                                        const at::Tensor& w_in, const at::Tensor& c_in,
                                                        const at::Tensor& point_weight_in, bool plane) {
  check_normal_equation_args(q_in, m_in, normals_in, normal_ok_in, w_in, c_in, point_weight_in, at::kCPU);
  const at::Tensor q = q_in.contiguous(), m = m_in.contiguous(), normals = normals_in.contiguous();
  const at::Tensor normal_ok = normal_ok_in.contiguous(), w = w_in.contiguous(), c = c_in.contiguous();
  const at::Tensor pw = point_weight_in.contiguous();
  const int64_t B = q.size(0), M = q.size(1);
  at::Tensor H = at::empty({B, 6, 6}, q.options().dtype(at::kDouble));
  at::Tensor g = at::empty({B, 6}, q.options().dtype(at::kDouble));
  const float *qp = q.data_ptr<float>(), *mp = m.data_ptr<float>(), *np = normals.data_ptr<float>();
  const float *wp = w.data_ptr<float>(), *cp = c.data_ptr<float>(), *pwp = pw.data_ptr<float>();
  const bool* okp = normal_ok.data_ptr<bool>();
  double *Hp = H.data_ptr<double>(), *gp = g.data_ptr<double>();
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      icp_normal_equations(qp + 3 * M * b, mp + 3 * M * b, np + 3 * M * b, okp + M * b, wp + M * b, cp + 3 * b,
                           pwp[b], plane, M, Hp + 36 * b, gp + 6 * b);
    }
  });
  return {H, g};
}

}  // namespace
}  // namespace refine
}  // namespace posecnn

TORCH_LIBRARY_FRAGMENT(posecnn, m) {
  m.def("model_visibility(Tensor points, Tensor valid, Tensor K, float margin) -> Tensor");
  m.def(
      "model_grid_nearest(Tensor q, Tensor s, Tensor s_ok, Tensor R, Tensor t, Tensor meta, Tensor table) "
      "-> (Tensor index, Tensor distance)");
  m.def(
      "icp_normal_equations(Tensor q, Tensor m, Tensor normals, Tensor normal_ok, Tensor w, Tensor c, "
      "Tensor point_weight, bool plane) -> (Tensor H, Tensor g)");
}

TORCH_LIBRARY_IMPL(posecnn, CPU, m) {
  m.impl("model_visibility", &posecnn::refine::visibility_cpu);
  m.impl("model_grid_nearest", &posecnn::refine::grid_nearest_cpu);
  m.impl("icp_normal_equations", &posecnn::refine::normal_equations_cpu);
}
