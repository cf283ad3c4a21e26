// PoseCNN Hough voting on the CPU (definition: docs/voting.md; reference: posecnn_core/voting.py).
//
// Registers the operator schemas posecnn::hough_voting and posecnn::hough_vote_counts and their CPU kernels.
// Votes are accumulated with at::parallel_for over (class, output row) pairs: each pair owns one row of one vote
// map, so no atomics are needed; the per-element rules come from hough_voting_common.h.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <optional>
#include <tuple>
#include <vector>

#include "hough_voting_common.h"
#include "hough_voting_ops.h"

namespace posecnn {
namespace hv {
namespace {

struct VoterSet {
  std::vector<int64_t> keys;                   // participating (b * C + c), ascending
  std::vector<Voter> voters;                   // grouped by key, row-major within a key
  std::vector<int64_t> start;                  // voters of keys[s]: [start[s], start[s + 1])
  std::vector<std::vector<int32_t>> din;      // with the same-label rule: each slot's distance map, ...
  std::vector<std::vector<int32_t>> run_end;  // ... the column where each pixel's run ends (class_maps) ...
  std::vector<ClassMaps> maps;                // ... and their window (ClassMaps)

  std::vector<float> steps;                    // float32 i / S, i = 0..S
  std::vector<int64_t> vote_box;               // per slot x0, y0, x1, y1: the cells its voters can reach (empty: x0 > x1)
};

// The maps of class c in image lab_b (ClassMaps) over the window [x0, x0 + w) x [y0, y0 + h): the class's bounding
// box widened by one pixel and clipped to the image, so that every pixel outside it is off the class and the nearest
// pixel off the class of any pixel inside lies in it (or outside the image). din: the Chebyshev distance to that
// pixel (outside the image counts as off the class), 0 off the class, by the classic two-pass chessboard transform;
// run_end: the image column of the last pixel of the pixel's run along the row, a run being consecutive pixels of
// the window that all carry the class or all do not.
void class_maps(const int64_t* lab_b, int64_t H, int64_t W, int64_t c, int64_t x0, int64_t y0, int64_t w, int64_t h,
                std::vector<int32_t>& din, std::vector<int32_t>& run_end) {
  din.assign(w * h, 0);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t X = x0 + x, Y = y0 + y;
      if (lab_b[Y * W + X] == c) {
        din[y * w + x] = static_cast<int32_t>(std::min(std::min(X + 1, Y + 1), std::min(W - X, H - Y)));
      }
    }
  }
  auto relax = [&](int64_t y, int64_t x, int64_t yy, int64_t xx) {
    if (yy >= 0 && yy < h && xx >= 0 && xx < w) din[y * w + x] = std::min(din[y * w + x], din[yy * w + xx] + 1);
  };
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      if (din[y * w + x] == 0) continue;
      relax(y, x, y, x - 1);
      relax(y, x, y - 1, x - 1);
      relax(y, x, y - 1, x);
      relax(y, x, y - 1, x + 1);
    }
  }
  for (int64_t y = h - 1; y >= 0; --y) {
    for (int64_t x = w - 1; x >= 0; --x) {
      if (din[y * w + x] == 0) continue;
      relax(y, x, y, x + 1);
      relax(y, x, y + 1, x + 1);
      relax(y, x, y + 1, x);
      relax(y, x, y + 1, x - 1);
    }
  }
  run_end.assign(w * h, 0);
  for (int64_t y = 0; y < h; ++y) {
    const int32_t* d = din.data() + y * w;
    int32_t* e = run_end.data() + y * w;
    for (int64_t x = w - 1; x >= 0; --x) {
      const bool last = x == w - 1 || (d[x] > 0) != (d[x + 1] > 0);
      e[x] = last ? static_cast<int32_t>(x0 + x) : e[x + 1];
    }
  }
}

VoterSet select_voters(const at::Tensor& labels, const at::Tensor& vertex, const at::Tensor& K,
                       const at::Tensor& extents, const Params& p) {
  const int64_t B = labels.size(0), H = labels.size(1), W = labels.size(2), C = extents.size(0), HW = H * W;
  const int64_t* lab = labels.data_ptr<int64_t>();
  const float* vtx = vertex.data_ptr<float>();
  const float* k = K.data_ptr<float>();
  const float* ext = extents.data_ptr<float>();
  // Pixel count and bounding box (x0, y0, x1, y1) of every (image, class).
  std::vector<int64_t> counts(B * C, 0), box(4 * B * C);
  for (int64_t key = 0; key < B * C; ++key) {
    box[4 * key] = W;
    box[4 * key + 1] = H;
    box[4 * key + 2] = -1;
    box[4 * key + 3] = -1;
  }
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t l = lab[b * HW + i];
        if (l < 1 || l >= C) continue;
        const int64_t key = b * C + l, x = i % W, y = i / W;
        ++counts[key];
        box[4 * key] = std::min(box[4 * key], x);
        box[4 * key + 1] = std::min(box[4 * key + 1], y);
        box[4 * key + 2] = std::max(box[4 * key + 2], x);
        box[4 * key + 3] = std::max(box[4 * key + 3], y);
      }
    }
  });
  VoterSet out;
  std::vector<int64_t> slot(B * C, -1);
  for (int64_t key = 0; key < B * C; ++key) {
    if (key % C != 0 && counts[key] > p.label_threshold) {
      slot[key] = static_cast<int64_t>(out.keys.size());
      out.keys.push_back(key);
    }
  }
  const int64_t S = static_cast<int64_t>(out.keys.size());
  out.steps.resize(p.same_label_samples + 1);
  for (int64_t i = 0; i <= p.same_label_samples; ++i) {
    out.steps[i] = div_rn(static_cast<float>(i), static_cast<float>(p.same_label_samples));
  }
  std::vector<std::vector<Voter>> per_slot(S);
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      std::vector<int64_t> rank(C, 0);
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t c = lab[b * HW + i];
        if (c < 1 || c >= C) continue;
        const int64_t s = slot[b * C + c];
        if (s < 0 || rank[c]++ % p.skip_pixels != 0) continue;
        const float* base = vtx + (b * 3 * C + 3 * c) * HW + i;
        Voter v;
        if (make_voter(b * C + c, i % W, i / W, base[0], base[HW], base[2 * HW], ext + 3 * c, k + 9 * b,
                       p.box_factor, p.inlier_threshold, H, W, v)) {
          per_slot[s].push_back(v);
        }
      }
    }
  });
  if (p.check_same_label) {
    // Each slot's window: its class's bounding box widened by one pixel, clipped to the image (class_maps).
    out.din.resize(S);
    out.run_end.resize(S);
    out.maps.resize(S);
    at::parallel_for(0, S, 1, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t key = out.keys[s];
        const int64_t x0 = std::max<int64_t>(box[4 * key] - 1, 0);
        const int64_t y0 = std::max<int64_t>(box[4 * key + 1] - 1, 0);
        const int64_t x1 = std::min<int64_t>(box[4 * key + 2] + 1, W - 1);
        const int64_t y1 = std::min<int64_t>(box[4 * key + 3] + 1, H - 1);
        class_maps(lab + (key / C) * HW, H, W, key % C, x0, y0, x1 - x0 + 1, y1 - y0 + 1, out.din[s],
                   out.run_end[s]);
        ClassMaps& m = out.maps[s];
        m = ClassMaps{out.din[s].data(), x0, y0, x1 - x0 + 1, y1 - y0 + 1};
        for (Voter& v : per_slot[s]) v.safe = m.din[m.at(v.x, v.y)];
      }
    });
  }
  out.vote_box.assign(4 * S, 0);
  for (int64_t s = 0; s < S; ++s) {
    int64_t* bx = out.vote_box.data() + 4 * s;
    bx[0] = W;
    bx[1] = H;
    bx[2] = -1;
    bx[3] = -1;
    for (const Voter& v : per_slot[s]) {
      bx[0] = std::min(bx[0], std::max<int64_t>(v.x - v.reach, 0));
      bx[1] = std::min(bx[1], std::max<int64_t>(v.y - v.reach, 0));
      bx[2] = std::max(bx[2], std::min<int64_t>(v.x + v.reach, W - 1));
      bx[3] = std::max(bx[3], std::min<int64_t>(v.y + v.reach, H - 1));
    }
  }
  out.start.assign(S + 1, 0);
  for (int64_t s = 0; s < S; ++s) out.start[s + 1] = out.start[s] + static_cast<int64_t>(per_slot[s].size());
  out.voters.reserve(out.start[S]);
  for (auto& vs : per_slot) out.voters.insert(out.voters.end(), vs.begin(), vs.end());
  return out;
}

// Cosine between voter p's direction and the offset (dx, dy), in float64 (within a few 1e-7 of the float32 one
// that direction_ok compares).
double cos_f64(const Voter& p, double dx, double dy) {
  return (static_cast<double>(p.u) * dx + static_cast<double>(p.v) * dy) /
         (static_cast<double>(p.n1) * std::sqrt(dx * dx + dy * dy));
}

// cos_f64(p, dx, dy) > t, decided without a square root or a division: dot > t * n1 * |(dx, dy)| compared through
// squares (all in float64; its rounding differs from cos_f64's by far less than the margins its callers leave).
bool cos_exceeds(const Voter& p, double dx, double dy, double t) {
  const double dot = static_cast<double>(p.u) * dx + static_cast<double>(p.v) * dy;
  const double n1 = static_cast<double>(p.n1);
  const double rhs = t * t * n1 * n1 * (dx * dx + dy * dy);
  if (t >= 0.0) return dot > 0.0 && dot * dot > rhs;
  return dot >= 0.0 || dot * dot < rhs;
}

// Largest cosine between voter p's direction and (dx, dy) over the cells dx = s * m, m in [m0, m1] (s = +-1,
// 1 <= m0 <= m1) of the row at offset dy, in float64. For dy != 0 the cosine is unimodal in dx along the row (the
// offset's angle moves monotonically), so its maximum is 1 where (dx, dy) points along (u, v) and otherwise lies
// at an end; for dy = 0 it is constant on the half row.
double half_row_max_cos(const Voter& p, int64_t dy, int64_t s, int64_t m0, int64_t m1) {
  const double u = static_cast<double>(p.u), v = static_cast<double>(p.v);
  const double fdy = static_cast<double>(dy);
  auto cos_at = [&](double dx) { return cos_f64(p, dx, fdy); };
  if (dy != 0 && v != 0.0 && fdy / v > 0.0) {  // (dx*, dy) = (dy / v) * (u, v) lies on this row
    const double xs = u * fdy / v;
    if (xs * static_cast<double>(s) >= static_cast<double>(m0) && xs * static_cast<double>(s) <= static_cast<double>(m1)) {
      return 1.0;
    }
  }
  return std::max(cos_at(static_cast<double>(s * m0)), cos_at(static_cast<double>(s * m1)));
}

// AVX2 where the CPU has it, unless POSECNN_OPS_PORTABLE is set (the tests use it to check the portable loops on
// AVX2 machines).
bool use_avx2() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool avx2 = __builtin_cpu_supports("avx2") && std::getenv("POSECNN_OPS_PORTABLE") == nullptr;
  return avx2;
#else
  return false;
#endif
}

// out[j] += 1 for every j < L whose prefix sum cnt[0] + ... + cnt[j] reaches `needed`.
void add_passing_portable(const int32_t* cnt, int64_t L, int64_t needed, int32_t* out) {
  int32_t acc = 0;
  for (int64_t j = 0; j < L; ++j) {
    acc += cnt[j];
    out[j] += acc >= needed ? 1 : 0;
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
// add_passing_portable, 8 cells per vector: an in-register prefix sum (two shifts within each 128-bit half, then the
// lower half's total added to the upper half) plus the running total of the cells before.
__attribute__((target("avx2"))) void add_passing_avx2(const int32_t* cnt, int64_t L, int64_t needed, int32_t* out) {
  const __m256i last = _mm256_set1_epi32(7);
  const __m256i limit = _mm256_set1_epi32(static_cast<int32_t>(needed - 1));
  __m256i carry = _mm256_setzero_si256();
  int64_t j = 0;
  for (; j + 8 <= L; j += 8) {
    __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cnt + j));
    x = _mm256_add_epi32(x, _mm256_slli_si256(x, 4));
    x = _mm256_add_epi32(x, _mm256_slli_si256(x, 8));
    x = _mm256_add_epi32(x, _mm256_shuffle_epi32(_mm256_permute2x128_si256(x, x, 0x08), 0xFF));
    x = _mm256_add_epi32(x, carry);
    carry = _mm256_permutevar8x32_epi32(x, last);
    __m256i* o = reinterpret_cast<__m256i*>(out + j);
    _mm256_storeu_si256(o, _mm256_sub_epi32(_mm256_loadu_si256(o), _mm256_cmpgt_epi32(x, limit)));
  }
  int32_t acc = _mm256_extract_epi32(carry, 0);
  for (; j < L; ++j) {
    acc += cnt[j];
    out[j] += acc >= needed ? 1 : 0;
  }
}
#endif

// add_passing_portable, through AVX2 where the CPU has it (use_avx2).
void add_passing(const int32_t* cnt, int64_t L, int64_t needed, int32_t* out) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (use_avx2()) {
    add_passing_avx2(cnt, L, needed, out);
    return;
  }
#endif
  add_passing_portable(cnt, L, needed, out);
}

// The same-label rule for every cell (cx, cy), cx in [a, b], of voter (x, y), counted sample by sample over the
// label runs instead of cell by cell. Sample i of cell cx is (q_i(cx), y_i): its row y_i = sample_coord(y, i/S,
// cy - y) is the same for the whole span, and its column q_i(cx) = sample_coord(x, i/S, cx - x) never decreases
// with cx (a rounded product and sum are monotone, so is truncation). So the cells whose sample i carries the class
// are, for each run of the class on row y_i between q_i(a) and q_i(b), one interval of consecutive cells, whose
// ends (the first cell whose sample reaches a column) are found from the real-number estimate and corrected by
// evaluating sample_coord itself. A sample whose columns all lie in one run carries the class for every cell of the
// span or for none; when such samples decide the span, no interval is worked out. Otherwise the intervals of the
// other samples go into a difference array (`cnt`, b - a + 2 entries) and a cell's vote stands when its count plus
// the whole-span samples reaches `needed`, as in same_label_sampled. The samples outside the maps' window lie off
// the class. The cost is a few operations per sample and run instead of one label read per sample and cell.
// run_end: the slot's run ends (class_maps), same layout as maps.din; inv_steps: 1 / (i/S) in float64; mixed: room
// for S samples. Cells that pass go to row[a..b], or as one run to the row's difference array `diff` when
// they all do.
struct MixedSample {  // a sample of a span whose columns cross label runs: its index, row and end columns
  int64_t i, yi, qa, qb;
};

void count_span(const ClassMaps& maps, const int32_t* run_end, int64_t x, int64_t y, int64_t a, int64_t b,
                int64_t cy, int64_t S, const float* steps, const double* inv_steps, int64_t needed, int32_t* cnt,
                MixedSample* mixed, int32_t* row, int32_t* diff) {
  const int64_t L = b - a + 1;
  const float fx = static_cast<float>(x), fy = static_cast<float>(y), dy = static_cast<float>(cy - y);
  const int64_t wx0 = maps.x0, wx1 = maps.x0 + maps.w - 1;  // the window's columns
  int64_t whole = 0;     // samples in the class for every cell of the span
  int64_t possible = S;  // samples that may be in the class for some cell
  int64_t n_mixed = 0;   // samples whose columns cross runs: mixed[0..n_mixed)
  // First every sample's columns are classified by their end cells alone (one run or several), which settles the
  // span when enough samples are uniform; only then are the mixed samples' intervals worked out.
  for (int64_t i = S; i >= 1; --i) {  // from the cell back to the voter: the samples most likely to be out first
    if (whole >= needed || possible < needed) break;
    const float step = steps[i];
    const int64_t yi = sample_coord(fy, step, dy);
    const int64_t qa = sample_coord(fx, step, static_cast<float>(a - x));
    const int64_t qb = sample_coord(fx, step, static_cast<float>(b - x));
    if (yi < maps.y0 || yi >= maps.y0 + maps.h || qb < wx0 || qa > wx1) {  // the samples miss the window
      --possible;
    } else if (qa >= wx0 && run_end[(yi - maps.y0) * maps.w + (qa - wx0)] >= qb) {  // one run holds them all
      if (maps.din[(yi - maps.y0) * maps.w + (qa - wx0)] > 0) ++whole; else --possible;
    } else {
      mixed[n_mixed++] = MixedSample{i, yi, qa, qb};
    }
  }
  if (whole >= needed) {
    ++diff[a];
    --diff[b + 1];
    return;
  }
  if (possible < needed) return;
  std::fill(cnt, cnt + L + 1, 0);
  for (int64_t k = 0; k < n_mixed; ++k) {
    const int64_t i = mixed[k].i, qa = mixed[k].qa, qb = mixed[k].qb;
    const float step = steps[i];
    auto q = [&](int64_t cx) { return sample_coord(fx, step, static_cast<float>(cx - x)); };
    // first cell in [lo, b + 1] whose sample column is >= t (b + 1: none), given that it is not below lo
    auto first_reaching = [&](int64_t t, int64_t lo) {
      const int64_t est = x + ceil_i((static_cast<double>(t) - static_cast<double>(x)) * inv_steps[i]);
      int64_t c = imin(imax(est, lo), b + 1);
      while (c > lo && q(c - 1) >= t) --c;
      while (c <= b && q(c) < t) ++c;
      return c;
    };
    const int64_t off = (mixed[k].yi - maps.y0) * maps.w - maps.x0;
    const int32_t* din_row = maps.din + off;
    const int32_t* end_row = run_end + off;
    int64_t from = a;  // cells before `from` have samples in runs already handled
    for (int64_t col = qa; col <= qb;) {
      if (col < wx0 || col > wx1) {  // off the class outside the window
        col = col < wx0 ? wx0 : qb + 1;
        continue;
      }
      const int64_t e = std::min<int64_t>(end_row[col], qb);
      if (din_row[col] > 0) {
        const int64_t c0 = col == qa ? a : first_reaching(col, from);
        const int64_t c1 = e == qb ? b + 1 : first_reaching(e + 1, c0);
        ++cnt[c0 - a];
        --cnt[c1 - a];
        from = c1;
      }
      col = e + 1;
    }
  }
  add_passing(cnt, L, needed - whole, row + a);
}

// Narrows the open cells of a row around its certain interval [in_lo, in_hi]: walking outward from it, a cell whose
// float64 cosine exceeds the threshold by `margin` certainly passes the float32 direction test (joins [in_lo, in_hi]
// while the cells before it did too); the first cell below it by `margin` certainly fails, and so do all cells
// further out, so [lo, hi] ends there. (Along a row the cosine is unimodal; a cell below a certain-passing one lies
// past the maximum, where it falls monotonically outward.) The cells in between that neither bound decides stay
// open, and are tested one by one.
void tighten_row(const Voter& p, int64_t dy, double threshold, double margin, int64_t& lo, int64_t& hi,
                 int64_t& in_lo, int64_t& in_hi) {
  const double up = threshold + margin, down = threshold - margin, fdy = static_cast<double>(dy);
  auto passes = [&](int64_t x, double t) { return cos_exceeds(p, static_cast<double>(x - p.x), fdy, t); };
  for (int64_t x = in_lo - 1; x >= lo; --x) {
    if (x == in_lo - 1 && passes(x, up)) {
      in_lo = x;
    } else if (!passes(x, down)) {
      lo = x + 1;
      break;
    }
  }
  for (int64_t x = in_hi + 1; x <= hi; ++x) {
    if (x == in_hi + 1 && passes(x, up)) {
      in_hi = x;
    } else if (!passes(x, down)) {
      hi = x - 1;
      break;
    }
  }
}

// A certain interval [in_lo, in_hi] for a row close to the voter (|dy| <= kExactRows, where row_candidates gives
// none), narrowing [lo, hi] to the cells that may pass. On the voter's own row the cosine is +-u / n1 on each half
// row: a half row that clears the threshold by `margin` passes whole (and the other half fails). On the rows
// dy != 0 the cone's analytic interval (cone_row_bounds) is verified instead: its end cells are moved inward until
// their float64 cosine clears the threshold by `margin` (along a row the cosine is unimodal, so every cell between
// two such cells clears it too), and tighten_row ends [lo, hi] outward from them. False (nothing changed) when no
// cell certainly passes.
// threshold >= 0 (make_params): the half rows of dy = 0 cannot both pass.
bool exact_row_interval(const Voter& p, int64_t dy, int64_t W, double threshold, double margin, int64_t& lo,
                        int64_t& hi, int64_t& in_lo, int64_t& in_hi) {
  const double up = threshold + margin;
  if (dy == 0) {
    const double c = static_cast<double>(p.u) / static_cast<double>(p.n1);
    if (-c > up && lo <= p.x - 1) {  // the left half row
      in_lo = lo;
      in_hi = hi = imin(hi, p.x - 1);
      return true;
    }
    if (c > up && p.x + 1 <= hi) {  // the right half row
      in_lo = lo = imax(lo, p.x + 1);
      in_hi = hi;
      return true;
    }
    return false;
  }
  double A, B;
  if (!cone_row_bounds(p, dy, W, A, B)) return false;
  const double fdy = static_cast<double>(dy);
  auto passes = [&](int64_t x) { return cos_exceeds(p, static_cast<double>(x - p.x), fdy, up); };
  int64_t a = imax(lo, ceil_i(A)), b = imin(hi, floor_i(B));
  while (a <= b && !passes(a)) ++a;
  while (b >= a && !passes(b)) --b;
  if (a > b) return false;
  in_lo = a;
  in_hi = b;
  tighten_row(p, dy, threshold, margin, lo, hi, in_lo, in_hi);
  return true;
}

// Vote maps [S, H, W] int32 of the participating slots; one task per (slot, row) of the slot's vote box. On each
// row a voter's cells that certainly pass every test (inside the cone by kMargin cells, or verified by
// exact_row_interval on the rows next to the voter; inside the window; and, with the same-label rule, close enough
// to the voter, same_label_sure_reach) are counted as runs in a difference array; the cells whose direction verdict
// is open are tested one by one, and the same-label rule of the others is counted over the label runs
// (count_span).
at::Tensor accumulate(const VoterSet& vs, const at::Tensor& labels, int64_t C, const Params& p) {
  const int64_t H = labels.size(1), W = labels.size(2);
  const int64_t S = static_cast<int64_t>(vs.keys.size());
  at::Tensor V = at::zeros({S, H, W}, labels.options().dtype(at::kInt));
  int32_t* out = V.data_ptr<int32_t>();
  // Per voter the same-label reach (a property of the voter only).
  std::vector<int64_t> sure(vs.voters.size());
  for (int64_t s = 0; s < S; ++s) {
    const SameLabel sl{p.check_same_label, p.same_label_samples, p.same_label_needed, vs.steps.data(), nullptr};
    for (int64_t i = vs.start[s]; i < vs.start[s + 1]; ++i) sure[i] = same_label_sure_reach(vs.voters[i], sl, H, W);
  }
  std::vector<double> inv_steps(vs.steps.size(), 0.0);
  for (size_t i = 1; i < vs.steps.size(); ++i) inv_steps[i] = 1.0 / static_cast<double>(vs.steps[i]);
  const float inlier = static_cast<float>(p.inlier_threshold);
  // float32's cosine (dot / (n1 * n2), each step rounded) is within a few 1e-7 of the exact one
  constexpr double kCosMargin = 1e-5;
  // Per slot the largest reach: the voters of row y lie within it (voters are row-major within their slot).
  std::vector<int64_t> max_reach(S, 0);
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t i = vs.start[s]; i < vs.start[s + 1]; ++i) max_reach[s] = std::max(max_reach[s], vs.voters[i].reach);
  }
  // Tasks (slot, row) dealt to the threads in turn (t = c, c + n, c + 2n, ...): contiguous blocks would give one
  // thread the rows of one object and another thread empty rows.
  const int64_t T = S * H, n_chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), T));
  at::parallel_for(0, n_chunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<int32_t> diff(W + 1), cnt(W + 2);
    std::vector<MixedSample> mixed(p.same_label_samples + 1);
    for (int64_t c = c0; c < c1; ++c) {
    for (int64_t t = c; t < T; t += n_chunks) {
      const int64_t s = t / H, y = t % H;
      const int64_t* box = vs.vote_box.data() + 4 * s;  // no voter of the slot reaches the cells outside it
      if (y < box[1] || y > box[3]) continue;
      const ClassMaps* maps = p.check_same_label ? &vs.maps[s] : nullptr;
      const MapIs is_c{maps};
      const SameLabel sl{p.check_same_label, p.same_label_samples, p.same_label_needed, vs.steps.data(), maps};
      int32_t* row = out + (s * H + y) * W;
      std::fill(diff.begin() + box[0], diff.begin() + box[2] + 2, 0);
      // Cells [a, b] of row y one by one, through the shared per-element rule (votes_for).
      auto test_span = [&](const Voter& v, int64_t a, int64_t b) {
        for (int64_t x = a; x <= b; ++x) {
          if (votes_for(v, x, y, p.inlier_threshold, sl, is_c, H, W)) ++row[x];
        }
      };
      // Cells [from, to] of row y that pass the window and direction tests: their same-label rule, counted over
      // the label runs (count_span).
      auto same_label_span = [&](const Voter& v, int64_t from, int64_t to) {
        if (from > to) return;
        count_span(vs.maps[s], vs.run_end[s].data(), v.x, v.y, from, to, y, sl.S, sl.steps, inv_steps.data(),
                   sl.needed, cnt.data(), mixed.data(), row, diff.data());
      };
      // A stretch [a, b] of cells that pass the window and direction tests, with the same-label rule: the cells
      // within the voter's sure reach (same_label_sure_reach) pass it; the rest go through same_label_span.
      auto label_span = [&](const Voter& v, int64_t sure_reach, int64_t a, int64_t b) {
        int64_t run_lo = a, run_hi = a - 1;
        if (iabs(y - v.y) <= sure_reach) {
          run_lo = imax(a, v.x - sure_reach);
          run_hi = imin(b, v.x + sure_reach);
        }
        if (run_lo > run_hi) {
          same_label_span(v, a, b);
          return;
        }
        ++diff[run_lo];
        --diff[run_hi + 1];
        same_label_span(v, a, run_lo - 1);
        same_label_span(v, run_hi + 1, b);
      };
      // voters whose rows can reach row y: v.y in [y - max_reach, y + max_reach]
      const Voter* first = vs.voters.data() + vs.start[s];
      const Voter* last = vs.voters.data() + vs.start[s + 1];
      first = std::partition_point(first, last, [&](const Voter& v) { return v.y < y - max_reach[s]; });
      for (const Voter* vp = first; vp != last && vp->y <= y + max_reach[s]; ++vp) {
        const Voter& v = *vp;
        const int64_t i = vp - vs.voters.data();
        int64_t lo, hi, in_lo, in_hi;
        if (!row_candidates(v, y, W, lo, hi, &in_lo, &in_hi)) continue;
        const int64_t dy = y - v.y;
        if (in_lo <= in_hi) {
          tighten_row(v, dy, static_cast<double>(inlier), kCosMargin, lo, hi, in_lo, in_hi);
        } else if (iabs(dy) <= kExactRows) {
          exact_row_interval(v, dy, W, static_cast<double>(inlier), kCosMargin, lo, hi, in_lo, in_hi);
        }
        // Half rows whose cosine stays below the threshold by far more than float32's error: no cell passes.
        auto half_row_fails = [&](int64_t side, int64_t a, int64_t b) {
          const int64_t m0 = side < 0 ? v.x - b : a - v.x, m1 = side < 0 ? v.x - a : b - v.x;
          return half_row_max_cos(v, dy, side, m0, m1) < static_cast<double>(inlier) - kCosMargin;
        };
        if (!sl.check) {
          if (in_lo > in_hi) {  // no cell certainly inside the cone: test every candidate but certain failures
            for (int64_t side = -1; side <= 1; side += 2) {
              const int64_t a = side < 0 ? lo : imax(lo, v.x + 1), b = side < 0 ? imin(hi, v.x - 1) : hi;
              if (a <= b && !half_row_fails(side, a, b)) test_span(v, a, b);
            }
            test_span(v, imax(lo, v.x), imin(hi, v.x));
          } else {  // [in_lo, in_hi] passes every test (window and direction): one run
            ++diff[in_lo];
            --diff[in_hi + 1];
            test_span(v, lo, in_lo - 1);
            test_span(v, in_hi + 1, hi);
          }
          continue;
        }
        // With the same-label rule: the cells of [lo, hi] that pass the direction test (all of [in_lo, in_hi],
        // the others tested one by one) form stretches, and label_span decides each stretch's same-label rule
        // by runs. (The window test holds on all of [lo, hi]: row_candidates clips it to the voter's reach.)
        int64_t open = -1;  // first cell of the stretch being built, -1 when none
        auto close = [&](int64_t end) {
          if (open >= 0 && open <= end) label_span(v, sure[i], open, end);
          open = -1;
        };
        auto scan = [&](int64_t a, int64_t b) {
          for (int64_t x = a; x <= b; ++x) {
            if (direction_ok(v, x, y, p.inlier_threshold)) {
              if (open < 0) open = x;
            } else {
              close(x - 1);
            }
          }
        };
        if (in_lo > in_hi) {  // left half row, the voter's column, right half row
          const int64_t la = lo, lb = imin(hi, v.x - 1), ra = imax(lo, v.x + 1), rb = hi;
          if (la <= lb) {
            if (half_row_fails(-1, la, lb)) close(la - 1); else scan(la, lb);
          }
          if (lo <= v.x && v.x <= hi) scan(v.x, v.x);
          if (ra <= rb) {
            if (half_row_fails(1, ra, rb)) close(ra - 1); else scan(ra, rb);
          }
        } else {
          scan(lo, in_lo - 1);
          if (open < 0) open = in_lo;
          scan(in_hi + 1, hi);
        }
        close(hi);
      }
      int32_t run = 0;
      for (int64_t x = box[0]; x <= box[2]; ++x) {
        run += diff[x];
        row[x] += run;
      }
    }
    }
  });
  return V;
}

// Peaks of slot s in row-major order (multi-instance: vote tests, then statistics and box tests; single-instance:
// the first maximum when it has votes), with their statistics.
std::vector<Peak> slot_peaks(const VoterSet& vs, int64_t s, const int32_t* V, const int64_t* lab, const float* K,
                             const float* ext, int64_t H, int64_t W, int64_t C, const Params& p) {
  const int64_t key = vs.keys[s], b = key / C, c = key % C;
  const ClassMaps* maps = p.check_same_label ? &vs.maps[s] : nullptr;
  const MapIs is_c{maps};
  const SameLabel sl{p.check_same_label, p.same_label_samples, p.same_label_needed, vs.steps.data(), maps};
  std::vector<int64_t> cells;
  // Cells outside the slot's vote box hold no votes, so neither peaks (vote_threshold >= 0) nor a positive maximum.
  const int64_t* box = vs.vote_box.data() + 4 * s;
  if (p.multi) {
    for (int64_t y = box[1]; y <= box[3]; ++y) {
      for (int64_t x = box[0]; x <= box[2]; ++x) {
        if (is_peak(V, H, W, x, y, p.window / 2, p.break_ties, p.vote_threshold)) cells.push_back(y * W + x);
      }
    }
  } else {
    int64_t arg = -1;  // the first maximum in row-major order
    for (int64_t y = box[1]; y <= box[3]; ++y) {
      for (int64_t x = box[0]; x <= box[2]; ++x) {
        if (arg < 0 || V[y * W + x] > V[arg]) arg = y * W + x;
      }
    }
    if (arg >= 0 && V[arg] > 0) cells.push_back(arg);
  }
  std::vector<Peak> peaks;
  for (int64_t i : cells) {
    Peak pk;
    pk.key = key;
    pk.votes = V[i];
    peak_stats(vs.voters.data(), vs.start[s], vs.start[s + 1], i % W, i / W, p.inlier_threshold, sl, is_c, H, W,
               ext + 3 * c, K + 9 * b, p.box_factor, pk);
    if (!p.multi || box_tests(pk, p.per_threshold)) peaks.push_back(pk);
  }
  return peaks;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> hough_voting_cpu(
    const at::Tensor& labels_in, const at::Tensor& vertex_in, const at::Tensor& intrinsics_in,
    const at::Tensor& extents_in, int64_t label_threshold, int64_t skip_pixels, double inlier_threshold,
    std::optional<int64_t> vote_threshold, double per_threshold, int64_t window, int64_t max_peaks, bool break_ties,
    bool check_same_label, int64_t same_label_samples, double same_label_fraction, double box_factor) {
  check_inputs(labels_in, vertex_in, intrinsics_in, extents_in, at::kCPU);
  const Params p = make_params(label_threshold, skip_pixels, inlier_threshold, vote_threshold, per_threshold, window,
                               max_peaks, break_ties, check_same_label, same_label_samples, same_label_fraction,
                               box_factor);
  const at::Tensor labels = labels_in.contiguous(), vertex = vertex_in.contiguous();
  const at::Tensor K = intrinsics_in.contiguous(), extents = extents_in.contiguous();
  const int64_t B = labels.size(0), H = labels.size(1), W = labels.size(2), C = extents.size(0);
  const VoterSet vs = select_voters(labels, vertex, K, extents, p);
  const at::Tensor V = accumulate(vs, labels, C, p);
  const int64_t S = static_cast<int64_t>(vs.keys.size());
  std::vector<std::vector<Peak>> per_slot(S);
  const int32_t* v = V.data_ptr<int32_t>();
  const int64_t* lab = labels.data_ptr<int64_t>();
  const float* k = K.data_ptr<float>();
  const float* ext = extents.data_ptr<float>();
  at::parallel_for(0, S, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) per_slot[s] = slot_peaks(vs, s, v + s * H * W, lab, k, ext, H, W, C, p);
  });
  // at most max_peaks / B per image (multi-instance mode), the first ones in (class, row-major) order
  const int64_t cap = std::max<int64_t>(p.max_peaks / std::max<int64_t>(B, 1), 1);
  std::vector<int64_t> taken(B, 0);
  std::vector<const Peak*> rows;
  for (const auto& ps : per_slot) {
    for (const Peak& pk : ps) {
      const int64_t b = pk.key / C;
      if (p.multi && taken[b] >= cap) continue;
      ++taken[b];
      rows.push_back(&pk);
    }
  }
  const int64_t N = static_cast<int64_t>(rows.size());
  const auto f32 = labels.options().dtype(at::kFloat);
  at::Tensor rois = at::empty({N, 7}, f32), centres = at::empty({N, 2}, f32), trans = at::empty({N, 3}, f32);
  for (int64_t o = 0; o < N; ++o) {
    const Peak& pk = *rows[o];
    write_row(pk, C, k + 9 * (pk.key / C), rois.data_ptr<float>() + o * 7, centres.data_ptr<float>() + o * 2,
              trans.data_ptr<float>() + o * 3);
  }
  return {rois, centres, trans};
}

at::Tensor hough_vote_counts_cpu(const at::Tensor& labels_in, const at::Tensor& vertex_in,
                                 const at::Tensor& intrinsics_in, const at::Tensor& extents_in,
                                 int64_t label_threshold, int64_t skip_pixels, double inlier_threshold,
                                 bool check_same_label, int64_t same_label_samples, double same_label_fraction,
                                 double box_factor) {
  check_inputs(labels_in, vertex_in, intrinsics_in, extents_in, at::kCPU);
  const Params p = make_params(label_threshold, skip_pixels, inlier_threshold, std::nullopt, 0.0, 1, 1, true,
                               check_same_label, same_label_samples, same_label_fraction, box_factor);
  const at::Tensor labels = labels_in.contiguous(), vertex = vertex_in.contiguous();
  const at::Tensor K = intrinsics_in.contiguous(), extents = extents_in.contiguous();
  const int64_t B = labels.size(0), H = labels.size(1), W = labels.size(2), C = extents.size(0);
  const VoterSet vs = select_voters(labels, vertex, K, extents, p);
  const at::Tensor V = accumulate(vs, labels, C, p);
  at::Tensor out = at::zeros({B * C, H, W}, labels.options().dtype(at::kInt));
  if (!vs.keys.empty()) {
    out.index_copy_(0, at::tensor(vs.keys, labels.options()), V);
  }
  return out.view({B, C, H, W});
}

}  // namespace
}  // namespace hv
}  // namespace posecnn

TORCH_LIBRARY_FRAGMENT(posecnn, m) {
  m.def(
      "hough_voting(Tensor labels, Tensor vertex, Tensor intrinsics, Tensor extents, int label_threshold, "
      "int skip_pixels, float inlier_threshold, int? vote_threshold, float per_threshold, int window, "
      "int max_peaks, bool break_ties, bool check_same_label, int same_label_samples, float same_label_fraction, "
      "float box_factor) -> (Tensor rois, Tensor centers, Tensor translations)");
  m.def(
      "hough_vote_counts(Tensor labels, Tensor vertex, Tensor intrinsics, Tensor extents, int label_threshold, "
      "int skip_pixels, float inlier_threshold, bool check_same_label, int same_label_samples, "
      "float same_label_fraction, float box_factor) -> Tensor");
}

TORCH_LIBRARY_IMPL(posecnn, CPU, m) {
  m.impl("hough_voting", &posecnn::hv::hough_voting_cpu);
  m.impl("hough_vote_counts", &posecnn::hv::hough_vote_counts_cpu);
}
