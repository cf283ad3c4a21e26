// PoseCNN Hough voting on the CPU (definition: docs/voting.md; reference: posecnn_core/voting.py).
//
// Registers the operator schemas posecnn::hough_voting and posecnn::hough_vote_counts and their CPU kernels.
// Work is split over the participating (image, class) pairs with at::parallel_for; each pair owns its vote map,
// so no atomics are needed.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <optional>
#include <tuple>
#include <vector>

#include "hough_voting_common.h"
#include "hough_voting_ops.h"

namespace posecnn {
namespace hv {
namespace {

struct VoterSet {
  std::vector<int64_t> keys;      // participating (b * C + c), ascending
  std::vector<Voter> voters;      // grouped by key, row-major within a key
  std::vector<int64_t> start;     // voters of keys[s]: [start[s], start[s + 1])
};

VoterSet select_voters(const at::Tensor& labels, const at::Tensor& vertex, const at::Tensor& K,
                       const at::Tensor& extents, const Params& p) {
  const int64_t B = labels.size(0), H = labels.size(1), W = labels.size(2), C = extents.size(0), HW = H * W;
  const int64_t* lab = labels.data_ptr<int64_t>();
  const float* vtx = vertex.data_ptr<float>();
  const double* k = K.data_ptr<double>();
  const double* ext = extents.data_ptr<double>();
  std::vector<int64_t> counts(B * C, 0);
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t l = lab[b * HW + i];
        if (l >= 1 && l < C) ++counts[b * C + l];
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
  std::vector<std::vector<Voter>> per_slot(S);
  const double cos_t = p.cos_t(), sin_t = p.sin_t();
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      std::vector<int64_t> rank(C, 0);
      const double fx = k[b * 9 + 0], fy = k[b * 9 + 4];
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t c = lab[b * HW + i];
        if (c < 1 || c >= C) continue;
        const int64_t s = slot[b * C + c];
        if (s < 0 || rank[c]++ % p.skip_pixels != 0) continue;
        const float* base = vtx + (b * 3 * C + 3 * c) * HW + i;
        const double emax = std::max(ext[c * 3], std::max(ext[c * 3 + 1], ext[c * 3 + 2]));
        Voter v;
        if (make_voter(b * C + c, i % W, i / W, base[0], base[HW], base[2 * HW], fx, fy, emax, p.radius_factor,
                       cos_t, sin_t, H, W, v)) {
          per_slot[s].push_back(v);
        }
      }
    }
  });
  out.start.assign(S + 1, 0);
  for (int64_t s = 0; s < S; ++s) out.start[s + 1] = out.start[s] + static_cast<int64_t>(per_slot[s].size());
  out.voters.reserve(out.start[S]);
  for (auto& vs : per_slot) out.voters.insert(out.voters.end(), vs.begin(), vs.end());
  return out;
}

// Votes of slot s into V (H * W int32, zeroed).
void accumulate_slot(const VoterSet& vs, int64_t s, const int64_t* lab, int64_t H, int64_t W, int64_t C,
                     const Params& p, int32_t* V) {
  const double thr = p.inlier_threshold;
  const int64_t key = vs.keys[s], b = key / C, c = key % C;
  const int64_t* lab_b = lab + b * H * W;
  std::vector<int32_t> diff;
  if (!p.check_same_label) diff.assign(H * (W + 1), 0);
  for (int64_t i = vs.start[s]; i < vs.start[s + 1]; ++i) {
    const Voter& v = vs.voters[i];
    int64_t y0, y1;
    row_range(v, thr, H, y0, y1);
    for (int64_t y = y0; y <= y1; ++y) {
      int64_t lo, hi;
      if (!row_interval(v, y, W, thr, lo, hi)) continue;
      if (!p.check_same_label) {
        ++diff[y * (W + 1) + lo];
        --diff[y * (W + 1) + hi + 1];
        continue;
      }
      for (int64_t x = lo; x <= hi; ++x) {
        if (same_label(lab_b, H, W, c, v.u, v.v, x, y, p.same_label_samples, p.same_label_fraction)) {
          ++V[y * W + x];
        }
      }
    }
  }
  if (!p.check_same_label) {
    for (int64_t y = 0; y < H; ++y) {
      int32_t run = 0;
      for (int64_t x = 0; x < W; ++x) {
        run += diff[y * (W + 1) + x];
        V[y * W + x] = run;
      }
    }
  }
}

// Vote maps [S, H, W] int32 of the participating slots.
at::Tensor accumulate(const VoterSet& vs, const at::Tensor& labels, int64_t C, const Params& p) {
  const int64_t H = labels.size(1), W = labels.size(2);
  const int64_t S = static_cast<int64_t>(vs.keys.size());
  at::Tensor V = at::zeros({S, H, W}, labels.options().dtype(at::kInt));
  int32_t* out = V.data_ptr<int32_t>();
  const int64_t* lab = labels.data_ptr<int64_t>();
  at::parallel_for(0, S, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) accumulate_slot(vs, s, lab, H, W, C, p, out + s * H * W);
  });
  return V;
}

bool window_max(const int32_t* V, int64_t H, int64_t W, int64_t x, int64_t y, int64_t half) {
  const int32_t val = V[y * W + x];
  for (int64_t yy = std::max<int64_t>(y - half, 0); yy <= std::min(y + half, H - 1); ++yy) {
    for (int64_t xx = std::max<int64_t>(x - half, 0); xx <= std::min(x + half, W - 1); ++xx) {
      if (V[yy * W + xx] > val) return false;
    }
  }
  return true;
}

// Kept candidates of slot s: centres, statistics, per_threshold, NMS; ordered by votes desc, then row-major.
std::vector<Candidate> slot_candidates(const VoterSet& vs, int64_t s, const int32_t* V, const int64_t* lab,
                                       int64_t H, int64_t W, int64_t C, const Params& p) {
  const int64_t key = vs.keys[s], b = key / C, c = key % C;
  const int64_t* lab_b = lab + b * H * W;
  std::vector<int64_t> cells;
  if (p.multi) {
    for (int64_t i = 0; i < H * W; ++i) {
      if (V[i] > p.vote_threshold && window_max(V, H, W, i % W, i / W, p.window / 2)) cells.push_back(i);
    }
  } else {
    const int64_t arg = std::max_element(V, V + H * W) - V;  // first maximum
    if (H * W > 0 && V[arg] > 0) cells.push_back(arg);
  }
  std::vector<Candidate> cands;
  for (int64_t i : cells) {
    Candidate cand;
    cand.key = key;
    cand.votes = V[i];
    centre_stats(vs.voters.data(), vs.start[s], vs.start[s + 1], i % W, i / W, p.inlier_threshold,
                 p.check_same_label, lab_b, H, W, c, p.same_label_samples, p.same_label_fraction, cand);
    if (!p.multi || dense_enough(cand, p.per_threshold)) cands.push_back(cand);
  }
  std::stable_sort(cands.begin(), cands.end(),
                   [](const Candidate& a, const Candidate& b2) { return a.votes > b2.votes; });
  std::vector<Candidate> kept;
  for (const Candidate& cand : cands) {
    bool ok = true;
    for (const Candidate& k : kept) {
      if (box_iou(k, cand) > p.nms_iou) {
        ok = false;
        break;
      }
    }
    if (ok) kept.push_back(cand);
  }
  return kept;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> hough_voting_cpu(
    const at::Tensor& labels_in, const at::Tensor& vertex_in, const at::Tensor& intrinsics_in,
    const at::Tensor& extents_in, int64_t label_threshold, int64_t skip_pixels, double inlier_threshold,
    std::optional<int64_t> vote_threshold, double per_threshold, int64_t window, int64_t max_instances,
    double nms_iou, bool check_same_label, int64_t same_label_samples, double same_label_fraction,
    double radius_factor) {
  check_inputs(labels_in, vertex_in, intrinsics_in, extents_in, at::kCPU);
  const Params p = make_params(label_threshold, skip_pixels, inlier_threshold, vote_threshold, per_threshold, window,
                               max_instances, nms_iou, check_same_label, same_label_samples, same_label_fraction,
                               radius_factor);
  const at::Tensor labels = labels_in.contiguous(), vertex = vertex_in.contiguous();
  const at::Tensor K = intrinsics_in.contiguous(), extents = extents_in.contiguous();
  const int64_t B = labels.size(0), H = labels.size(1), W = labels.size(2), C = extents.size(0);
  const VoterSet vs = select_voters(labels, vertex, K, extents, p);
  const at::Tensor V = accumulate(vs, labels, C, p);
  const int64_t S = static_cast<int64_t>(vs.keys.size());
  std::vector<std::vector<Candidate>> per_slot(S);
  const int32_t* v = V.data_ptr<int32_t>();
  const int64_t* lab = labels.data_ptr<int64_t>();
  at::parallel_for(0, S, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) per_slot[s] = slot_candidates(vs, s, v + s * H * W, lab, H, W, C, p);
  });
  // at most max_instances per image, by votes desc, stable w.r.t. the output order (class, votes desc, y, x)
  std::vector<const Candidate*> rows;
  for (const auto& cs : per_slot) {
    for (const Candidate& cand : cs) rows.push_back(&cand);
  }
  std::vector<char> keep(rows.size(), 0);
  for (size_t a = 0; a < rows.size();) {
    size_t e = a;
    while (e < rows.size() && rows[e]->key / C == rows[a]->key / C) ++e;
    std::vector<size_t> order(e - a);
    std::iota(order.begin(), order.end(), a);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t i, size_t j) { return rows[i]->votes > rows[j]->votes; });
    for (size_t r = 0; r < order.size() && static_cast<int64_t>(r) < p.max_instances; ++r) keep[order[r]] = 1;
    a = e;
  }
  const int64_t N = std::count(keep.begin(), keep.end(), 1);
  const auto f32 = labels.options().dtype(at::kFloat);
  at::Tensor rois = at::empty({N, 7}, f32), centres = at::empty({N, 2}, f32), trans = at::empty({N, 3}, f32);
  const double* k = K.data_ptr<double>();
  int64_t o = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!keep[i]) continue;
    write_row(*rows[i], C, k, rois.data_ptr<float>() + o * 7, centres.data_ptr<float>() + o * 2,
              trans.data_ptr<float>() + o * 3);
    ++o;
  }
  (void)B;
  return {rois, centres, trans};
}

at::Tensor hough_vote_counts_cpu(const at::Tensor& labels_in, const at::Tensor& vertex_in,
                                 const at::Tensor& intrinsics_in, const at::Tensor& extents_in,
                                 int64_t label_threshold, int64_t skip_pixels, double inlier_threshold,
                                 bool check_same_label, int64_t same_label_samples, double same_label_fraction,
                                 double radius_factor) {
  check_inputs(labels_in, vertex_in, intrinsics_in, extents_in, at::kCPU);
  const Params p = make_params(label_threshold, skip_pixels, inlier_threshold, std::nullopt, 0.0, 1, 1, 0.5,
                               check_same_label, same_label_samples, same_label_fraction, radius_factor);
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
      "int max_instances, float nms_iou, bool check_same_label, int same_label_samples, float same_label_fraction, "
      "float radius_factor) -> (Tensor rois, Tensor centers, Tensor translations)");
  m.def(
      "hough_vote_counts(Tensor labels, Tensor vertex, Tensor intrinsics, Tensor extents, int label_threshold, "
      "int skip_pixels, float inlier_threshold, bool check_same_label, int same_label_samples, "
      "float same_label_fraction, float radius_factor) -> Tensor");
}

TORCH_LIBRARY_IMPL(posecnn, CPU, m) {
  m.impl("hough_voting", &posecnn::hv::hough_voting_cpu);
  m.impl("hough_vote_counts", &posecnn::hv::hough_vote_counts_cpu);
}
