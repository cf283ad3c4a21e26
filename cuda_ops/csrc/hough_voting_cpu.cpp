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
  std::vector<std::vector<int32_t>> din, dout;  // with the same-label rule: each slot's distance maps ...
  std::vector<ClassMaps> maps;                 // ... over the slot's window (ClassMaps)
  std::vector<float> steps;                    // float32 i / S, i = 0..S
};

// Chebyshev distance maps of class c over the window [x0, x0 + w) x [y0, y0 + h) of image lab_b (ClassMaps): the
// classic two-pass chessboard transform, exact (a shortest Chebyshev path between two pixels of a rectangle stays
// in it). din: to the nearest pixel off the class or outside the image; dout: to the nearest pixel of the class
// (all of which lie in the window).
void chessboard_maps(const int64_t* lab_b, int64_t H, int64_t W, int64_t c, int64_t x0, int64_t y0, int64_t w,
                     int64_t h, std::vector<int32_t>& din, std::vector<int32_t>& dout) {
  constexpr int32_t kFar = 1 << 29;
  din.assign(w * h, 0);
  dout.assign(w * h, 0);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t X = x0 + x, Y = y0 + y;
      const bool on = lab_b[Y * W + X] == c;
      const int64_t border = std::min(std::min(X + 1, Y + 1), std::min(W - X, H - Y));
      din[y * w + x] = on ? static_cast<int32_t>(border) : 0;
      dout[y * w + x] = on ? 0 : kFar;
    }
  }
  auto sweep = [&](std::vector<int32_t>& d) {
    auto relax = [&](int64_t y, int64_t x, int64_t yy, int64_t xx) {
      if (yy >= 0 && yy < h && xx >= 0 && xx < w) d[y * w + x] = std::min(d[y * w + x], d[yy * w + xx] + 1);
    };
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        if (d[y * w + x] == 0) continue;
        relax(y, x, y, x - 1);
        relax(y, x, y - 1, x - 1);
        relax(y, x, y - 1, x);
        relax(y, x, y - 1, x + 1);
      }
    }
    for (int64_t y = h - 1; y >= 0; --y) {
      for (int64_t x = w - 1; x >= 0; --x) {
        if (d[y * w + x] == 0) continue;
        relax(y, x, y, x + 1);
        relax(y, x, y + 1, x + 1);
        relax(y, x, y + 1, x);
        relax(y, x, y + 1, x - 1);
      }
    }
  };
  sweep(din);
  sweep(dout);
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
    // Each slot's window: its class's bounding box widened by the largest voter reach (every cell a voter can
    // vote for lies in it), clipped to the image; the distance maps cover that window only.
    out.din.resize(S);
    out.dout.resize(S);
    out.maps.resize(S);
    at::parallel_for(0, S, 1, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t key = out.keys[s];
        int64_t reach = 1;
        for (const Voter& v : per_slot[s]) reach = std::max(reach, v.reach + 1);
        const int64_t x0 = std::max<int64_t>(box[4 * key] - reach, 0);
        const int64_t y0 = std::max<int64_t>(box[4 * key + 1] - reach, 0);
        const int64_t x1 = std::min<int64_t>(box[4 * key + 2] + reach, W - 1);
        const int64_t y1 = std::min<int64_t>(box[4 * key + 3] + reach, H - 1);
        chessboard_maps(lab + (key / C) * HW, H, W, key % C, x0, y0, x1 - x0 + 1, y1 - y0 + 1, out.din[s],
                        out.dout[s]);
        ClassMaps& m = out.maps[s];
        m = ClassMaps{out.din[s].data(), out.dout[s].data(), x0, y0, x1 - x0 + 1, y1 - y0 + 1};
        for (Voter& v : per_slot[s]) v.safe = m.din[m.at(v.x, v.y)];
      }
    });
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

constexpr int64_t kBlock = 16;  // cells sampled together by sample_block

// The same-label rule for the n <= kBlock cells (cx0 + j, cy), j < n, of voter (x, y), by their samples alone: the
// samples of same_label_sampled (sample_coord, the i/S table `steps`), but every sample of every cell is counted
// (no early exit), sample by sample across the cells. The samples of a cell lie between the voter and the cell,
// hence inside the class's maps' window (it holds both); the column is clamped to the window all the same. Writes
// 1 (the vote stands) or 0 to pass[j].
void sample_block_portable(const ClassMaps& maps, int64_t x, int64_t y, int64_t cx0, int64_t cy, int64_t n,
                           int64_t S, const float* steps, int64_t needed, int32_t* pass) {
  int32_t count[kBlock] = {0};
  const float fx = static_cast<float>(x), fy = static_cast<float>(y), dy = static_cast<float>(cy - y);
  const int64_t lo = maps.x0, hi = maps.x0 + maps.w - 1;
  for (int64_t i = 1; i <= S; ++i) {
    const float step = steps[i];
    const int32_t* din_row = maps.din + (sample_coord(fy, step, dy) - maps.y0) * maps.w - maps.x0;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t qx = imin(imax(sample_coord(fx, step, static_cast<float>(cx0 + j - x)), lo), hi);
      count[j] += din_row[qx] > 0 ? 1 : 0;
    }
  }
  for (int64_t j = 0; j < n; ++j) pass[j] = count[j] >= needed ? 1 : 0;
}

#if defined(__x86_64__) && defined(__GNUC__)
// sample_block_portable with AVX2 (8 cells per vector, the labels gathered): the same float32 operations (a
// product, then a sum, each rounded; truncation), so the same samples. Cells j >= n are computed and ignored.
__attribute__((target("avx2"))) void sample_block_avx2(const ClassMaps& maps, int64_t x, int64_t y, int64_t cx0,
                                                      int64_t cy, int64_t n, int64_t S, const float* steps,
                                                      int64_t needed, int32_t* pass) {
  static_assert(kBlock == 16, "two vectors of 8 cells");
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i base = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(cx0 - x)), iota);
  const __m256 dx_a = _mm256_cvtepi32_ps(base);  // exact: small integers
  const __m256 dx_b = _mm256_cvtepi32_ps(_mm256_add_epi32(base, _mm256_set1_epi32(8)));
  const __m256 fx = _mm256_set1_ps(static_cast<float>(x));
  const __m256i lo = _mm256_set1_epi32(static_cast<int32_t>(maps.x0));
  const __m256i hi = _mm256_set1_epi32(static_cast<int32_t>(maps.x0 + maps.w - 1));
  const __m256i zero = _mm256_setzero_si256();
  const float fy = static_cast<float>(y), dy = static_cast<float>(cy - y);
  __m256i count_a = zero, count_b = zero;
  for (int64_t i = 1; i <= S; ++i) {
    const __m256 step = _mm256_set1_ps(steps[i]);
    const __m256i row = _mm256_set1_epi32(
        static_cast<int32_t>((sample_coord(fy, steps[i], dy) - maps.y0) * maps.w - maps.x0));
    const __m256i qx_a = _mm256_min_epi32(_mm256_max_epi32(
        _mm256_cvttps_epi32(_mm256_add_ps(fx, _mm256_mul_ps(step, dx_a))), lo), hi);
    const __m256i qx_b = _mm256_min_epi32(_mm256_max_epi32(
        _mm256_cvttps_epi32(_mm256_add_ps(fx, _mm256_mul_ps(step, dx_b))), lo), hi);
    const __m256i din_a = _mm256_i32gather_epi32(maps.din, _mm256_add_epi32(row, qx_a), 4);
    const __m256i din_b = _mm256_i32gather_epi32(maps.din, _mm256_add_epi32(row, qx_b), 4);
    count_a = _mm256_sub_epi32(count_a, _mm256_cmpgt_epi32(din_a, zero));  // the mask is -1 where in the class
    count_b = _mm256_sub_epi32(count_b, _mm256_cmpgt_epi32(din_b, zero));
  }
  alignas(32) int32_t count[kBlock];
  _mm256_store_si256(reinterpret_cast<__m256i*>(count), count_a);
  _mm256_store_si256(reinterpret_cast<__m256i*>(count + 8), count_b);
  for (int64_t j = 0; j < n; ++j) pass[j] = count[j] >= needed ? 1 : 0;
}
#endif

// sample_block_portable, through AVX2 where the CPU has it (unless POSECNN_OPS_PORTABLE is set: the tests use it to
// check the portable loop on AVX2 machines).
void sample_block(const ClassMaps& maps, int64_t x, int64_t y, int64_t cx0, int64_t cy, int64_t n, int64_t S,
                  const float* steps, int64_t needed, int32_t* pass) {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool avx2 = __builtin_cpu_supports("avx2") && std::getenv("POSECNN_OPS_PORTABLE") == nullptr;
  if (avx2) {
    sample_block_avx2(maps, x, y, cx0, cy, n, S, steps, needed, pass);
    return;
  }
#endif
  sample_block_portable(maps, x, y, cx0, cy, n, S, steps, needed, pass);
}

// Narrows the open cells of a row around its certain interval [in_lo, in_hi] (row_candidates, |dy| > kExactRows):
// walking outward from it, a cell whose float64 cosine exceeds the threshold by `margin` certainly passes the float32
// direction test (joins [in_lo, in_hi]); one below it by `margin` certainly fails, and so do all cells further out
// (along a row the cosine falls monotonically away from the cone), so [lo, hi] ends there. The walk stops at the
// first cell it cannot decide; the cells left between lo and in_lo (in_hi and hi) are tested one by one.
void tighten_row(const Voter& p, int64_t dy, double threshold, double margin, int64_t& lo, int64_t& hi,
                 int64_t& in_lo, int64_t& in_hi) {
  auto cos_at = [&](int64_t x) { return cos_f64(p, static_cast<double>(x - p.x), static_cast<double>(dy)); };
  for (int64_t x = in_lo - 1; x >= lo; --x) {
    const double c = cos_at(x);
    if (c > threshold + margin) {
      in_lo = x;
    } else {
      if (c < threshold - margin) lo = x + 1;
      break;
    }
  }
  for (int64_t x = in_hi + 1; x <= hi; ++x) {
    const double c = cos_at(x);
    if (c > threshold + margin) {
      in_hi = x;
    } else {
      if (c < threshold - margin) hi = x - 1;
      break;
    }
  }
}

// Vote maps [S, H, W] int32 of the participating slots; one task per (slot, row). On each row a voter's cells that
// certainly pass every test (inside the cone by kMargin cells, inside the window, and, with the same-label rule,
// close enough to the voter, same_label_sure_reach, or in a run that same_label_pass_run vouches for) are counted
// as runs in a difference array; only the cells whose direction or same-label verdict is open are tested one by
// one.
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
    std::vector<int32_t> diff(W + 1);
    for (int64_t c = c0; c < c1; ++c) {
    for (int64_t t = c; t < T; t += n_chunks) {
      const int64_t s = t / H, y = t % H;
      const ClassMaps* maps = p.check_same_label ? &vs.maps[s] : nullptr;
      const MapIs is_c{maps};
      const SameLabel sl{p.check_same_label, p.same_label_samples, p.same_label_needed, vs.steps.data(), maps};
      int32_t* row = out + (s * H + y) * W;
      std::fill(diff.begin(), diff.end(), 0);
      // Cells [a, b] of row y one by one, through the shared per-element rule (votes_for).
      auto test_span = [&](const Voter& v, int64_t a, int64_t b) {
        for (int64_t x = a; x <= b; ++x) {
          if (votes_for(v, x, y, p.inlier_threshold, sl, is_c, H, W)) ++row[x];
        }
      };
      // Cells [from, to] of row y that pass the window and direction tests: runs of cells that certainly pass
      // the same-label rule are counted at once (same_label_pass_run), runs that certainly fail skipped
      // (same_label_fail_run). A cell that neither bound decides lies where the samples cross a class border,
      // and so, mostly, do the cells after it: it and the next kBlock - 1 cells are sampled together
      // (sample_block; same_label_ok would only ask the bounds that just failed again) before the bounds are
      // asked again.
      auto same_label_span = [&](const Voter& v, int64_t from, int64_t to) {
        for (int64_t x = from; x <= to;) {
          const int64_t more = same_label_pass_run(vs.maps[s], v.x, v.y, x, y, sl.S, sl.needed, to - x);
          if (more >= 0) {
            const int64_t end = imin(to, x + more);
            ++diff[x];
            --diff[end + 1];
            x = end + 1;
            continue;
          }
          const int64_t fail = same_label_fail_run(vs.maps[s], v.x, v.y, x, y, sl.S, sl.needed);
          if (fail >= 0) {  // this cell and `fail` more certainly fail: skip them
            x += fail + 1;
            continue;
          }
          const int64_t n = imin(to - x + 1, kBlock);
          int32_t pass[kBlock];
          sample_block(vs.maps[s], v.x, v.y, x, y, n, sl.S, sl.steps, sl.needed, pass);
          for (int64_t k = 0; k < n; ++k) row[x + k] += pass[k];
          x += n;
        }
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
        if (in_lo <= in_hi) tighten_row(v, dy, static_cast<double>(inlier), kCosMargin, lo, hi, in_lo, in_hi);
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
      for (int64_t x = 0; x < W; ++x) {
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
  if (p.multi) {
    for (int64_t i = 0; i < H * W; ++i) {
      if (is_peak(V, H, W, i % W, i / W, p.window / 2, p.break_ties, p.vote_threshold)) cells.push_back(i);
    }
  } else if (H * W > 0) {
    const int64_t arg = std::max_element(V, V + H * W) - V;  // the first maximum
    if (V[arg] > 0) cells.push_back(arg);
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
