// Per-element logic of PoseCNN's Hough voting, shared by hough_voting_cpu.cpp and hough_voting_cuda.cu.
//
// The definition is docs/voting.md; posecnn_core/voting.py is the reference these functions reproduce. Every
// quantity that decides a vote is computed in float64 with the operation order of the reference; products that feed
// an addition are exact (integer offsets times float32 values), so FMA contraction cannot change a decision.
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

// One voting pixel. key = b * C + c.
struct Voter {
  int64_t key;
  int64_t u, v;          // column, row
  double nx, ny, nn;     // direction (float32 values) and its length
  double z, r2;          // depth exp(log z) and squared vote radius
  double ra;             // radius clamped to H + W (for the analytic interval only)
  double e1x, e1y, e2x, e2y;  // unit edge rays of the cone (n rotated by +/- acos(inlier_threshold))
};

// A centre candidate and the statistics of its inlier voters.
struct Candidate {
  int64_t key;
  int64_t x, y;
  int64_t votes, count, bw, bh;
  double zsum;
};

HV_HOST_DEVICE bool is_finite(double a) { return (a - a) == 0.0; }
HV_HOST_DEVICE int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
HV_HOST_DEVICE int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
HV_HOST_DEVICE double dclamp(double a, double lo, double hi) { return a < lo ? lo : (a > hi ? hi : a); }

// Vote radius r = ((radius_factor * max(fx, fy)) * max extent) / z.
HV_HOST_DEVICE double radius(double radius_factor, double fx, double fy, double emax, double z) {
  const double f = fx > fy ? fx : fy;
  return ((radius_factor * f) * emax) / z;
}

// Build a voter from the vertex values at (u, v); false when the pixel does not vote (zero/non-finite direction,
// non-finite or zero depth). cos_t = inlier_threshold, sin_t = sqrt(1 - cos_t^2).
HV_HOST_DEVICE bool make_voter(int64_t key, int64_t u, int64_t v, float nxf, float nyf, float logzf, double fx,
                               double fy, double emax, double radius_factor, double cos_t, double sin_t, int64_t H,
                               int64_t W, Voter& o) {
  const double nx = nxf, ny = nyf;
  if (!is_finite(nx) || !is_finite(ny) || (nx == 0.0 && ny == 0.0)) return false;
  const double z = exp(static_cast<double>(logzf));
  if (!is_finite(z) || !(z > 0.0)) return false;
  o.key = key;
  o.u = u;
  o.v = v;
  o.nx = nx;
  o.ny = ny;
  o.nn = sqrt(nx * nx + ny * ny);
  o.z = z;
  const double r = radius(radius_factor, fx, fy, emax, z);
  o.r2 = r * r;
  const double rr = sqrt(o.r2);
  const double cap = static_cast<double>(H + W);
  o.ra = rr < cap ? rr : cap;
  const double ux = nx / o.nn, uy = ny / o.nn;
  o.e1x = ux * cos_t - uy * sin_t;
  o.e1y = ux * sin_t + uy * cos_t;
  o.e2x = ux * cos_t + uy * sin_t;
  o.e2y = -ux * sin_t + uy * cos_t;
  return true;
}

// The exact inlier predicate (without the same-label rule) of voter p for cell (x, y).
HV_HOST_DEVICE bool inlier(const Voter& p, int64_t x, int64_t y, double thr) {
  const double dx = static_cast<double>(x - p.u);
  const double dy = static_cast<double>(y - p.v);
  const double d2 = dx * dx + dy * dy;
  if (!(d2 > 0.0) || !(d2 <= p.r2)) return false;
  const double dot = dx * p.nx + dy * p.ny;
  return dot > (thr * sqrt(d2)) * p.nn;
}

// PoseCNN-PyTorch's rule: at least frac * S of the samples floor(p + d * k / (S + 1) + 0.5), k = 1..S, lie in the
// image and carry label c. lab points at image b's labels (H * W, row-major).
HV_HOST_DEVICE bool same_label(const int64_t* lab, int64_t H, int64_t W, int64_t c, int64_t u, int64_t v, int64_t x,
                               int64_t y, int64_t S, double frac) {
  const int64_t dx = x - u, dy = y - v;
  int64_t hits = 0;
  for (int64_t k = 1; k <= S; ++k) {
    const double qx = floor(static_cast<double>(u) + static_cast<double>(dx * k) / static_cast<double>(S + 1) + 0.5);
    const double qy = floor(static_cast<double>(v) + static_cast<double>(dy * k) / static_cast<double>(S + 1) + 0.5);
    if (qx >= 0.0 && qx <= static_cast<double>(W - 1) && qy >= 0.0 && qy <= static_cast<double>(H - 1) &&
        lab[static_cast<int64_t>(qy) * W + static_cast<int64_t>(qx)] == c) {
      ++hits;
    }
  }
  return static_cast<double>(hits) >= frac * static_cast<double>(S);
}

// The full predicate of step 2 (with the same-label rule when `check` is set).
HV_HOST_DEVICE bool full_inlier(const Voter& p, int64_t x, int64_t y, double thr, bool check, const int64_t* lab,
                                int64_t H, int64_t W, int64_t c, int64_t S, double frac) {
  if (!inlier(p, x, y, thr)) return false;
  return !check || same_label(lab, H, W, c, p.u, p.v, x, y, S, frac);
}

// Rows [y0, y1] that the voter's sector (cone within the disk) can reach, padded by one row; empty when y0 > y1.
HV_HOST_DEVICE void row_range(const Voter& p, double thr, int64_t H, int64_t& y0, int64_t& y1) {
  const double uy = p.ny / p.nn;
  const double a = p.ra * p.e1y, b = p.ra * p.e2y;
  double lo = a < b ? a : b, hi = a > b ? a : b;
  lo = lo < 0.0 ? lo : 0.0;
  hi = hi > 0.0 ? hi : 0.0;
  if (-uy >= thr) lo = -p.ra;
  if (uy >= thr) hi = p.ra;
  const double v = static_cast<double>(p.v);
  y0 = imax(static_cast<int64_t>(floor(v + lo)) - 1, 0);
  y1 = imin(static_cast<int64_t>(ceil(v + hi)) + 1, H - 1);
}

// Columns [lo, hi] of the inlier cells (predicate without the same-label rule) of voter p on row y; false when none.
// The interval is computed analytically, then its ends are moved with the exact predicate.
HV_HOST_DEVICE bool row_interval(const Voter& p, int64_t y, int64_t W, double thr, int64_t& lo_out, int64_t& hi_out) {
  const double dy = static_cast<double>(y - p.v);
  const double h2 = p.ra * p.ra - dy * dy;
  const double hw = sqrt(h2 > 0.0 ? h2 : 0.0);
  double L = -hw, R = hw;
  bool empty = false;
  // cross(e2, d) > 0  <=>  e2x * dy - e2y * s > 0
  if (p.e2y > 0.0) {
    const double bnd = p.e2x * dy / p.e2y;
    R = bnd < R ? bnd : R;
  } else if (p.e2y < 0.0) {
    const double bnd = p.e2x * dy / p.e2y;
    L = bnd > L ? bnd : L;
  } else if (!(p.e2x * dy > 0.0)) {
    empty = true;
  }
  // cross(d, e1) > 0  <=>  s * e1y - dy * e1x > 0
  if (p.e1y > 0.0) {
    const double bnd = dy * p.e1x / p.e1y;
    L = bnd > L ? bnd : L;
  } else if (p.e1y < 0.0) {
    const double bnd = dy * p.e1x / p.e1y;
    R = bnd < R ? bnd : R;
  } else if (!(-dy * p.e1x > 0.0)) {
    empty = true;
  }
  int64_t lo, hi;
  if (empty) {
    lo = W;
    hi = -1;
  } else {
    const double u = static_cast<double>(p.u), fw = static_cast<double>(W);
    lo = imax(static_cast<int64_t>(ceil(dclamp(u + L, -1.0, fw))), 0);
    hi = imin(static_cast<int64_t>(floor(dclamp(u + R, -1.0, fw))), W - 1);
  }
  while (lo >= 1 && inlier(p, lo - 1, y, thr)) --lo;
  while (hi <= W - 2 && inlier(p, hi + 1, y, thr)) ++hi;
  while (lo <= hi && !inlier(p, lo, y, thr)) ++lo;
  while (hi >= lo && !inlier(p, hi, y, thr)) --hi;
  lo_out = lo;
  hi_out = hi;
  return lo <= hi;
}

// Statistics of the inlier voters voters[a, e) (all of one class) for the centre (x, y), summed in voter order.
HV_HOST_DEVICE void centre_stats(const Voter* voters, int64_t a, int64_t e, int64_t x, int64_t y, double thr,
                                 bool check, const int64_t* lab, int64_t H, int64_t W, int64_t c, int64_t S,
                                 double frac, Candidate& out) {
  int64_t cnt = 0, bw = 0, bh = 0;
  double zsum = 0.0;
  for (int64_t i = a; i < e; ++i) {
    const Voter& p = voters[i];
    if (!full_inlier(p, x, y, thr, check, lab, H, W, c, S, frac)) continue;
    ++cnt;
    zsum += p.z;
    const int64_t ax = p.u > x ? p.u - x : x - p.u;
    const int64_t ay = p.v > y ? p.v - y : y - p.v;
    bw = ax > bw ? ax : bw;
    bh = ay > bh ? ay : bh;
  }
  out.x = x;
  out.y = y;
  out.count = cnt;
  out.zsum = zsum;
  out.bw = bw;
  out.bh = bh;
}

// Multi-instance filter: votes / max(4 * bw * bh, 1) >= per_threshold.
HV_HOST_DEVICE bool dense_enough(const Candidate& cand, double per_threshold) {
  const int64_t area = imax(4 * cand.bw * cand.bh, 1);
  return static_cast<double>(cand.votes) / static_cast<double>(area) >= per_threshold;
}

// IoU of the candidates' boxes (x -+ bw, y -+ bh); areas without +1; a zero-area box gives 0.
HV_HOST_DEVICE double box_iou(const Candidate& a, const Candidate& b) {
  const double ax1 = static_cast<double>(a.x - a.bw), ay1 = static_cast<double>(a.y - a.bh);
  const double ax2 = static_cast<double>(a.x + a.bw), ay2 = static_cast<double>(a.y + a.bh);
  const double bx1 = static_cast<double>(b.x - b.bw), by1 = static_cast<double>(b.y - b.bh);
  const double bx2 = static_cast<double>(b.x + b.bw), by2 = static_cast<double>(b.y + b.bh);
  const double area_a = (ax2 - ax1) * (ay2 - ay1), area_b = (bx2 - bx1) * (by2 - by1);
  double iw = (ax2 < bx2 ? ax2 : bx2) - (ax1 > bx1 ? ax1 : bx1);
  double ih = (ay2 < by2 ? ay2 : by2) - (ay1 > by1 ? ay1 : by1);
  iw = iw > 0.0 ? iw : 0.0;
  ih = ih > 0.0 ? ih : 0.0;
  const double inter = iw * ih;
  const double uni = area_a + area_b - inter;
  if (!(area_a > 0.0) || !(area_b > 0.0) || !(uni > 0.0)) return 0.0;
  return inter / uni;
}

// Output row of a kept candidate: rois (b, c, x1, y1, x2, y2, votes), centre (x, y), translation.
HV_HOST_DEVICE void write_row(const Candidate& cand, int64_t C, const double* K /* [B,3,3] */, float* roi,
                              float* centre, float* trans) {
  const int64_t b = cand.key / C, c = cand.key % C;
  const double* k = K + b * 9;
  const double fx = k[0], px = k[2], fy = k[4], py = k[5];
  const double tz = cand.zsum / static_cast<double>(cand.count);
  roi[0] = static_cast<float>(b);
  roi[1] = static_cast<float>(c);
  roi[2] = static_cast<float>(cand.x - cand.bw);
  roi[3] = static_cast<float>(cand.y - cand.bh);
  roi[4] = static_cast<float>(cand.x + cand.bw);
  roi[5] = static_cast<float>(cand.y + cand.bh);
  roi[6] = static_cast<float>(cand.votes);
  centre[0] = static_cast<float>(cand.x);
  centre[1] = static_cast<float>(cand.y);
  trans[0] = static_cast<float>(tz * (static_cast<double>(cand.x) - px) / fx);
  trans[1] = static_cast<float>(tz * (static_cast<double>(cand.y) - py) / fy);
  trans[2] = static_cast<float>(tz);
}

}  // namespace hv
}  // namespace posecnn
