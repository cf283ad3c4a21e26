// Per-element rules of PoseCNN-PyTorch's Hough voting, shared by hough_voting_cpu.cpp and hough_voting_cuda.cu.
//
// The definition is docs/voting.md; posecnn_core/voting.py is the reference these functions reproduce. Every
// decision is taken in float32 with PT's operation order. Products and sums go through mul_rn / add_rn so that a
// compiler can never fuse them into an FMA (nvcc contracts a * b + c by default); division and square root are
// the correctly rounded IEEE operations on both sides.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define HV_HOST_DEVICE __host__ __device__ inline
#else
#define HV_HOST_DEVICE inline
#endif

namespace posecnn {
namespace hv {

constexpr int64_t kExactRows = 2;  // rows with |dy| <= this are scanned over the whole window row
constexpr int64_t kMargin = 2;     // cells added on both sides of the analytic cone interval

HV_HOST_DEVICE float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
HV_HOST_DEVICE float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
HV_HOST_DEVICE float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
HV_HOST_DEVICE float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
HV_HOST_DEVICE float sqrt_rn(float a) {
#ifdef __CUDA_ARCH__
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
// fmin/fmax: the non-NaN operand when one is NaN (C99 fmin, torch.fmin)
HV_HOST_DEVICE float fmin_f(float a, float b) { return fminf(a, b); }
HV_HOST_DEVICE float fmax_f(float a, float b) { return fmaxf(a, b); }
HV_HOST_DEVICE int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
HV_HOST_DEVICE int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
HV_HOST_DEVICE int64_t iabs(int64_t a) { return a < 0 ? -a : a; }
// floor and ceil of a double in int64 range, without libm (x86-64 without SSE4.1 calls a library function for them)
HV_HOST_DEVICE int64_t floor_i(double a) {
  const int64_t t = static_cast<int64_t>(a);  // toward zero
  return static_cast<double>(t) > a ? t - 1 : t;
}
HV_HOST_DEVICE int64_t ceil_i(double a) {
  const int64_t t = static_cast<int64_t>(a);
  return static_cast<double>(t) < a ? t + 1 : t;
}
HV_HOST_DEVICE bool finite_f(float a) { return (a - a) == 0.0f; }

// PT's project_box: window half-size thr = factor * max(w, h) of the class's 3D box (half extents e/2) placed at
// depth d on the optical axis: corners (+-ex/2, +-ey/2, d +- ez/2), x = fx * (X / Z) + px, w = maxX - minX + 1.
HV_HOST_DEVICE float project_threshold(float ex, float ey, float ez, float d, float fx, float fy, float px, float py,
                                       float factor) {
  const float xh = mul_rn(ex, 0.5f), yh = mul_rn(ey, 0.5f), zh = mul_rn(ez, 0.5f);
  float min_x = 1e8f, max_x = -1e8f, min_y = 1e8f, max_y = -1e8f;
  for (int k = 0; k < 8; ++k) {
    const float X = (k & 1) ? -xh : xh;
    const float Y = (k & 2) ? -yh : yh;
    const float Z = add_rn((k & 4) ? -zh : zh, d);
    const float x = add_rn(mul_rn(fx, div_rn(X, Z)), px);
    const float y = add_rn(mul_rn(fy, div_rn(Y, Z)), py);
    min_x = fmin_f(min_x, x);
    max_x = fmax_f(max_x, x);
    min_y = fmin_f(min_y, y);
    max_y = fmax_f(max_y, y);
  }
  const float w = add_rn(sub_rn(max_x, min_x), 1.0f);
  const float h = add_rn(sub_rn(max_y, min_y), 1.0f);
  return mul_rn(fmax_f(w, h), factor);
}

// Largest integer offset k with k < thr (= ceil(thr) - 1), -1 when thr is not > 0; capped at max(H, W).
HV_HOST_DEVICE int64_t window_reach(float thr, int64_t H, int64_t W) {
  const int64_t cap = H > W ? H : W;
  if (!(thr > 0.0f)) return -1;
  double t = static_cast<double>(thr);
  if (t > static_cast<double>(cap) + 1.0) t = static_cast<double>(cap) + 1.0;
  const int64_t k = static_cast<int64_t>(ceil(t)) - 1;
  return k < cap ? k : cap;
}

// One voting pixel. key = b * C + c.
struct Voter {
  int64_t key;
  int64_t x, y;                // column, row
  int64_t safe;                // every pixel closer than this (Chebyshev) carries the voter's class; 0 = unknown
  float u, v, n1;              // direction and its length (float32)
  float d, thr;                // depth and window half-size at that depth
  int64_t reach;               // window_reach(thr)
  double e1x, e1y, e2x, e2y;   // cone edge rays (float64, candidate intervals only)
  double s1, s2;               // their slopes e1x / e1y and e2x / e2y (0 where e1y or e2y is 0)
};

// A peak and its statistics.
struct Peak {
  int64_t key;
  int64_t x, y;
  int64_t votes;
  float depth;     // mean depth of the voters (float64 sum in voter order, then float32)
  float bw, bh;    // 2 * max |dx|, 2 * max |dy| of the box pass (-2 when no voter is in the box window)
};

// Depth of a voter: exp of the float32 log depth, evaluated in float64 and rounded to float32.
HV_HOST_DEVICE float voter_depth(float logz) { return static_cast<float>(exp(static_cast<double>(logz))); }

// Build a voter; false when it can never vote (zero or non-finite direction, window not > 0).
// ext: the class's 3 extents; k: the image's 3x3 intrinsics (row-major); inlier: the float32 threshold.
HV_HOST_DEVICE bool make_voter(int64_t key, int64_t x, int64_t y, float u, float v, float logz, const float* ext,
                               const float* k, float factor, float inlier, int64_t H, int64_t W, Voter& o) {
  const float n1 = sqrt_rn(add_rn(mul_rn(u, u), mul_rn(v, v)));
  if (!finite_f(n1) || !(n1 > 0.0f)) return false;
  const float d = voter_depth(logz);
  const float thr = project_threshold(ext[0], ext[1], ext[2], d, k[0], k[4], k[2], k[5], factor);
  const int64_t reach = window_reach(thr, H, W);
  if (reach < 0) return false;
  o.key = key;
  o.x = x;
  o.y = y;
  o.safe = 0;
  o.u = u;
  o.v = v;
  o.n1 = n1;
  o.d = d;
  o.thr = thr;
  o.reach = reach;
  const double cos_t = static_cast<double>(inlier), sin_t = sqrt(1.0 - cos_t * cos_t);
  const double ux = static_cast<double>(u) / static_cast<double>(n1);
  const double uy = static_cast<double>(v) / static_cast<double>(n1);
  o.e1x = ux * cos_t - uy * sin_t;
  o.e1y = ux * sin_t + uy * cos_t;
  o.e2x = ux * cos_t + uy * sin_t;
  o.e2y = -ux * sin_t + uy * cos_t;
  o.s1 = o.e1y != 0.0 ? o.e1x / o.e1y : 0.0;
  o.s2 = o.e2y != 0.0 ? o.e2x / o.e2y : 0.0;
  return true;
}

// cos((u, v), (cx - x, cy - y)) > inlier: dot / (n1 * n2); NaN (the voter's own cell) never passes.
HV_HOST_DEVICE bool direction_ok(const Voter& p, int64_t cx, int64_t cy, float inlier) {
  const float dx = static_cast<float>(cx - p.x), dy = static_cast<float>(cy - p.y);
  const float n2 = sqrt_rn(add_rn(mul_rn(dx, dx), mul_rn(dy, dy)));
  const float dot = add_rn(mul_rn(p.u, dx), mul_rn(p.v, dy));
  return div_rn(dot, mul_rn(p.n1, n2)) > inlier;
}

// Smallest count of same-label samples for which the vote stands: the first k in 0..S with !(k / S < frac)
// (float32 ratio, as PT compares it); S + 1 when none.
HV_HOST_DEVICE int64_t same_label_needed(int64_t S, double frac) {
  const float fs = static_cast<float>(S);
  for (int64_t k = 0; k <= S; ++k) {
    if (!(static_cast<double>(div_rn(static_cast<float>(k), fs)) < frac)) return k;
  }
  return S + 1;
}

// Label tests for the same-label rule: does pixel (x, y) of the image carry the voter's class? (x, y) is inside
// the image.
struct LabelIs {  // from the label map
  const int64_t* lab;
  int64_t c, W;
  HV_HOST_DEVICE bool operator()(int64_t x, int64_t y) const { return lab[y * W + x] == c; }
};

// Chebyshev distance map of one class over a window [x0, x0 + w) x [y0, y0 + h) of the image that holds all of the
// class's pixels (CPU): din = distance to the nearest pixel that does not carry the class (outside the image counts
// as such), 0 off the class (and everywhere outside the window).
struct ClassMaps {
  const int32_t* din;
  int64_t x0, y0, w, h;
  HV_HOST_DEVICE bool inside(int64_t x, int64_t y) const { return x >= x0 && x < x0 + w && y >= y0 && y < y0 + h; }
  HV_HOST_DEVICE int64_t at(int64_t x, int64_t y) const { return (y - y0) * w + (x - x0); }
};
struct MapIs {  // label test from the class's maps (faster on the CPU): the class lies inside the window
  const ClassMaps* m;
  HV_HOST_DEVICE bool operator()(int64_t x, int64_t y) const { return m->inside(x, y) && m->din[m->at(x, y)] > 0; }
};

// Bounds used to decide the same-label rule without sampling. Sample q_i (i = 1..S) of the segment from the voter
// p to the cell c, a = max(|dx|, |dy|), lies within Chebyshev distance < (i/S) * a + 1 of p and < (1 - i/S) * a + 1
// of c (truncation moves a point by less than one pixel; 0.01 more covers float32 rounding, which is below 1e-3 at
// any image size this code accepts). A pixel closer than din to a pixel of the class carries it. So sample i
// certainly carries the class when (i/S) * a + 1.01 < din(p) or (1 - i/S) * a + 1.01 < din(c).
// Number of i in 1..S with (i/S) * a + 1.01 < D (samples certainly closer than D to the voter).
HV_HOST_DEVICE int64_t samples_near_voter(int64_t S, int64_t a, int64_t D) {
  const double U = static_cast<double>(S) * (static_cast<double>(D) - 1.01) / static_cast<double>(a);
  if (!(U > 1.0)) return 0;
  const int64_t n = static_cast<int64_t>(ceil(U)) - 1;  // i < U
  return n < S ? n : S;
}

// Samples j..j + k - 1 of the segment from the voter (x, y) to the cell (cx, cy) all carry the class, decided from
// one distance map lookup: they lie within Chebyshev distance (k - 1) / (2S) * a of the segment's point at fraction
// (2j + k - 1) / (2S), so within < (k - 1) / (2S) * a + 1.51 of the pixel m nearest to it (truncation: < 1,
// rounding m: <= 0.5, float32: < 0.01); true when din(m) exceeds that. False when undecided or m lies outside the
// maps' window.
HV_HOST_DEVICE bool run_in_class(const ClassMaps& maps, int64_t x, int64_t y, int64_t cx, int64_t cy, double a,
                                 int64_t S, int64_t j, int64_t k) {
  const double f = static_cast<double>(2 * j + k - 1) / static_cast<double>(2 * S);
  const int64_t mx = x + static_cast<int64_t>(floor(f * static_cast<double>(cx - x) + 0.5));
  const int64_t my = y + static_cast<int64_t>(floor(f * static_cast<double>(cy - y) + 0.5));
  if (!maps.inside(mx, my)) return false;
  const int32_t D = maps.din[maps.at(mx, my)];
  return static_cast<double>(D) > static_cast<double>(k - 1) / static_cast<double>(2 * S) * a + 1.51;
}

// Coordinate of a same-label sample: int(v + step * d) in float32 (truncation toward zero), v the voter's
// coordinate, d the offset to the cell, step = i / S.
HV_HOST_DEVICE int64_t sample_coord(float v, float step, float d) {
  return static_cast<int64_t>(add_rn(v, mul_rn(step, d)));
}

// The same-label rule by its samples alone (same_label_ok without the shortcuts): the samples are counted from the
// cell back to the voter, stopping as soon as the decision is known.
template <class IsC>
HV_HOST_DEVICE bool same_label_sampled(IsC is_c, int64_t H, int64_t W, int64_t x, int64_t y, int64_t cx, int64_t cy,
                                       int64_t S, const float* steps, int64_t needed) {
  if (needed > S) return false;
  const float dx = static_cast<float>(cx - x), dy = static_cast<float>(cy - y);
  const float fs = static_cast<float>(S), fx = static_cast<float>(x), fy = static_cast<float>(y);
  int64_t count = 0;
  for (int64_t i = S; i >= 1; --i) {
    if (count >= needed) return true;
    if (count + i < needed) return false;  // i samples are left
    const float step = steps ? steps[i] : div_rn(static_cast<float>(i), fs);
    const int64_t qx = sample_coord(fx, step, dx);
    const int64_t qy = sample_coord(fy, step, dy);
    if (qx >= 0 && qx < W && qy >= 0 && qy < H && is_c(qx, qy)) ++count;
  }
  return count >= needed;
}

// PT's same-label sampling: q_i = (int(x + i/S * dx), int(y + i/S * dy)), i = 1..S, float32, truncation toward
// zero; the vote stands when at least `needed` samples (same_label_needed) lie in the image and carry the class.
// `steps` (optional) holds the float32 i/S for i = 0..S. Exact shortcuts that do not change the decision (see the
// bounds above): `safe` (0 = unknown) is the voter's din: when the first `needed` samples lie closer to the voter
// than that, the vote stands; with the class's maps (`maps`, CPU), run_in_class decides runs of consecutive
// samples from one lookup each. Only when these bounds leave the verdict open are the samples counted, from the
// cell back to the voter, stopping as soon as the decision is known.
template <class IsC>
HV_HOST_DEVICE bool same_label_ok(IsC is_c, int64_t H, int64_t W, int64_t x, int64_t y, int64_t cx, int64_t cy,
                                  int64_t S, const float* steps, int64_t needed, int64_t safe,
                                  const ClassMaps* maps = nullptr) {
  if (needed > S) return false;
  const int64_t adx = cx > x ? cx - x : x - cx, ady = cy > y ? cy - y : y - cy;
  const double a = static_cast<double>(adx > ady ? adx : ady), fS = static_cast<double>(S);
  // needed samples near the voter (samples_near_voter(S, a, safe) >= needed): they carry the class
  if (safe > 0 && fS * (static_cast<double>(safe) - 1.01) > static_cast<double>(needed) * a) return true;
  if (maps != nullptr && needed >= 1) {
    // `needed` consecutive samples j..j + needed - 1 (at the cell's end, in the middle, at the voter's end) that all
    // carry the class: the vote stands.
    const int64_t ends[3] = {S - needed + 1, (S - needed) / 2 + 1, 1};
    for (int64_t e = 0; e < 3; ++e) {
      if (run_in_class(*maps, x, y, cx, cy, a, S, ends[e], needed)) return true;
    }
  }
  return same_label_sampled(is_c, H, W, x, y, cx, cy, S, steps, needed);
}

// The same-label settings of one call: S samples, `needed` of them must carry the class, optional i/S table,
// optional distance maps of the class (CPU).
struct SameLabel {
  bool check;
  int64_t S, needed;
  const float* steps;
  const ClassMaps* maps;
};

// The square window |dx| < thr and |dy| < thr.
HV_HOST_DEVICE bool in_window(const Voter& p, int64_t cx, int64_t cy, float thr) {
  return static_cast<float>(iabs(p.x - cx)) < thr && static_cast<float>(iabs(p.y - cy)) < thr;
}

// Everything but the window: direction, then (when sl.check) the same-label samples.
template <class IsC>
HV_HOST_DEVICE bool label_and_direction(const Voter& p, int64_t cx, int64_t cy, float inlier, const SameLabel& sl,
                                        IsC is_c, int64_t H, int64_t W) {
  if (!direction_ok(p, cx, cy, inlier)) return false;
  return !sl.check || same_label_ok(is_c, H, W, p.x, p.y, cx, cy, sl.S, sl.steps, sl.needed, p.safe, sl.maps);
}

// Voter p votes for (cx, cy): direction, window at the voter's own depth, same-label samples.
template <class IsC>
HV_HOST_DEVICE bool votes_for(const Voter& p, int64_t cx, int64_t cy, float inlier, const SameLabel& sl, IsC is_c,
                              int64_t H, int64_t W) {
  if (!direction_ok(p, cx, cy, inlier) || !in_window(p, cx, cy, p.thr)) return false;
  return !sl.check || same_label_ok(is_c, H, W, p.x, p.y, cx, cy, sl.S, sl.steps, sl.needed, p.safe, sl.maps);
}

// The cone's analytic interval on the row at offset dyi != 0 from voter p: the columns x with a < x < b lie strictly
// between its edge rays (float64; a and b clamped to [-(W + 1), 2 (W + 1)] around the voter). False when the row
// misses the cone.
HV_HOST_DEVICE bool cone_row_bounds(const Voter& p, int64_t dyi, int64_t W, double& a_out, double& b_out) {
  const double dy = static_cast<double>(dyi), big = static_cast<double>(W + 1);
  double L = -big, R = big;
  bool empty = false;
  if (p.e2y > 0.0) {  // cross(e2, d) > 0  <=>  e2x * dy - e2y * s > 0
    const double bnd = dy * p.s2;
    R = bnd < R ? bnd : R;
  } else if (p.e2y < 0.0) {
    const double bnd = dy * p.s2;
    L = bnd > L ? bnd : L;
  } else if (!(p.e2x * dy > 0.0)) {
    empty = true;
  }
  if (p.e1y > 0.0) {  // cross(d, e1) > 0  <=>  s * e1y - dy * e1x > 0
    const double bnd = dy * p.s1;
    L = bnd > L ? bnd : L;
  } else if (p.e1y < 0.0) {
    const double bnd = dy * p.s1;
    R = bnd < R ? bnd : R;
  } else if (!(-dy * p.e1x > 0.0)) {
    empty = true;
  }
  if (empty || L > R) return false;
  const double x = static_cast<double>(p.x);
  double a = x + L, b = x + R;
  a_out = a < -big ? -big : (a > 2 * big ? 2 * big : a);
  b_out = b < -big ? -big : (b > 2 * big ? 2 * big : b);
  return true;
}

// Columns [lo, hi] that may hold cells voter p votes for on row y: the window row, narrowed to the cone's
// analytic interval (cone_row_bounds) widened by kMargin cells unless |dy| <= kExactRows. A superset; false when
// empty. inner_lo/inner_hi (optional): the analytic interval narrowed by kMargin cells instead, whose cells certainly
// pass the float32 direction test (empty, inner_lo > inner_hi, when |dy| <= kExactRows). Why kMargin cells suffice:
// for |dy| > kExactRows a cell kMargin columns inside an edge ray lies at least 2 * 3 / r^2 radians (r <= the image
// diagonal) inside the cone, a cosine margin above 1e-6 at any image size up to 2^12, while the float32 cosine
// and the float64 edge rays are accurate to a few 1e-7.
HV_HOST_DEVICE bool row_candidates(const Voter& p, int64_t y, int64_t W, int64_t& lo_out, int64_t& hi_out,
                                   int64_t* inner_lo = nullptr, int64_t* inner_hi = nullptr) {
  if (inner_lo != nullptr) {
    *inner_lo = 0;
    *inner_hi = -1;
  }
  const int64_t dyi = y - p.y;
  if (iabs(dyi) > p.reach) return false;
  int64_t lo = imax(p.x - p.reach, 0), hi = imin(p.x + p.reach, W - 1);
  if (iabs(dyi) > kExactRows) {
    double a, b;
    if (!cone_row_bounds(p, dyi, W, a, b)) return false;
    if (inner_lo != nullptr) {
      *inner_lo = imax(lo, ceil_i(a) + kMargin);
      *inner_hi = imin(hi, floor_i(b) - kMargin);
    }
    lo = imax(lo, floor_i(a) - kMargin);
    hi = imin(hi, ceil_i(b) + kMargin);
  }
  lo_out = lo;
  hi_out = hi;
  return lo <= hi;
}

// Largest Chebyshev offset a = max(|dx|, |dy|) from voter p at which every cell passes the same-label rule
// whatever the labels beyond the voter's safe radius (samples_near_voter >= needed, i.e. S * (safe - 1.01) / a >
// needed); -1 when none, or no limit (the whole image) without the rule.
HV_HOST_DEVICE int64_t same_label_sure_reach(const Voter& p, const SameLabel& sl, int64_t H, int64_t W) {
  if (!sl.check) return H > W ? H : W;
  if (p.safe <= 1 || sl.needed > sl.S) return -1;
  if (sl.needed <= 0) return H > W ? H : W;
  const double bound = static_cast<double>(sl.S) * (static_cast<double>(p.safe) - 1.01) /
                       static_cast<double>(sl.needed);  // a < bound
  int64_t a = static_cast<int64_t>(ceil(bound)) - 1;
  while (a >= 1 && samples_near_voter(sl.S, a, p.safe) < sl.needed) --a;  // guard against rounding at the bound
  return a;
}

// Vote tests of a cell: V > vote_threshold, no larger V in the window (clipped to the image) and, when
// `break_ties` (test mode), no equal V at a larger linear index. V: one class's H * W vote map.
HV_HOST_DEVICE bool is_peak(const int* V, int64_t H, int64_t W, int64_t x, int64_t y, int64_t half,
                            bool break_ties, int64_t vote_threshold) {
  const int val = V[y * W + x];
  if (!(static_cast<int64_t>(val) > vote_threshold)) return false;
  const int64_t me = y * W + x;
  for (int64_t yy = imax(y - half, 0); yy <= imin(y + half, H - 1); ++yy) {
    for (int64_t xx = imax(x - half, 0); xx <= imin(x + half, W - 1); ++xx) {
      const int other = V[yy * W + xx];
      if (other > val) return false;
      if (break_ties && other == val && yy * W + xx > me) return false;
    }
  }
  return true;
}

// PT's per-cell statistics over the class's voters voters[a, e): mean depth of the voters that vote for the cell,
// then the box pass with the window recomputed at that mean depth (bw, bh = 2 * max offset, -2 when none).
template <class IsC>
HV_HOST_DEVICE void peak_stats(const Voter* voters, int64_t a, int64_t e, int64_t x, int64_t y, float inlier,
                               const SameLabel& sl, IsC is_c, int64_t H, int64_t W, const float* ext, const float* k,
                               float factor, Peak& out) {
  int64_t count = 0;
  double zsum = 0.0;
  for (int64_t i = a; i < e; ++i) {
    if (!votes_for(voters[i], x, y, inlier, sl, is_c, H, W)) continue;
    ++count;
    zsum += static_cast<double>(voters[i].d);
  }
  const float depth = count > 0 ? static_cast<float>(zsum / static_cast<double>(count)) : 0.0f;
  const float thr = project_threshold(ext[0], ext[1], ext[2], depth, k[0], k[4], k[2], k[5], factor);
  float bw = -1.0f, bh = -1.0f;
  for (int64_t i = a; i < e; ++i) {
    const Voter& p = voters[i];
    if (!in_window(p, x, y, thr)) continue;
    if (!label_and_direction(p, x, y, inlier, sl, is_c, H, W)) continue;
    const float adx = static_cast<float>(iabs(p.x - x)), ady = static_cast<float>(iabs(p.y - y));
    bw = adx > bw ? adx : bw;
    bh = ady > bh ? ady : bh;
  }
  out.x = x;
  out.y = y;
  out.depth = depth;
  out.bw = mul_rn(bw, 2.0f);
  out.bh = mul_rn(bh, 2.0f);
}

// Box tests of a peak: box width and height > 0 and votes / (bh * bw) not below per_threshold.
HV_HOST_DEVICE bool box_tests(const Peak& pk, float per_threshold) {
  if (!(pk.bw > 0.0f) || !(pk.bh > 0.0f)) return false;
  return !(div_rn(static_cast<float>(pk.votes), mul_rn(pk.bh, pk.bw)) < per_threshold);
}

// Output row of a peak: rois (b, c, x -+ bw/2, y -+ bh/2, votes), centre (x, y), translation (rx Tz, ry Tz, Tz)
// with rx = (x - px) / fx in float32. k: the image's intrinsics.
HV_HOST_DEVICE void write_row(const Peak& pk, int64_t C, const float* k, float* roi, float* centre, float* trans) {
  const int64_t b = pk.key / C, c = pk.key % C;
  const float x = static_cast<float>(pk.x), y = static_cast<float>(pk.y);
  roi[0] = static_cast<float>(b);
  roi[1] = static_cast<float>(c);
  roi[2] = sub_rn(x, mul_rn(pk.bw, 0.5f));
  roi[3] = sub_rn(y, mul_rn(pk.bh, 0.5f));
  roi[4] = add_rn(x, mul_rn(pk.bw, 0.5f));
  roi[5] = add_rn(y, mul_rn(pk.bh, 0.5f));
  roi[6] = static_cast<float>(pk.votes);
  centre[0] = x;
  centre[1] = y;
  const float rx = div_rn(sub_rn(x, k[2]), k[0]);
  const float ry = div_rn(sub_rn(y, k[5]), k[4]);
  trans[0] = mul_rn(rx, pk.depth);
  trans[1] = mul_rn(ry, pk.depth);
  trans[2] = pk.depth;
}

}  // namespace hv
}  // namespace posecnn
