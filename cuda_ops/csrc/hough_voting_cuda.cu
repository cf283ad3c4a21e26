// PoseCNN Hough voting on the GPU (definition: docs/voting.md; reference: posecnn_core/voting.py).
//
// Pipeline, all on the current stream without host round trips; one synchronisation at the end reads the number of
// output rows (and the peak count, to redo the peak stage in the rare case its buffer overflowed):
//   1. per (image, class) pixel counts; stable sort of the pixels by key b * C + c (row-major within a key);
//   2. voter flags (rank % skip == 0, can vote), prefix sum, voter array grouped by key;
//   3. one thread per (voter, row): the row's candidate columns (common header), every cell tested with the
//      exact rule and counted with atomicAdd into the vote map;
//   4. peaks (vote tests, statistics, box tests; or the per-class first maximum) appended to a buffer;
//   5. peaks sorted by (key, y, x); the first max_peaks / B per image kept; compaction into the output.
// Every decision uses the float32 functions of hough_voting_common.h (no FMA contraction), so the result equals
// the CPU operator's. The same-label shortcut (Voter::safe) is not used here: voters keep safe = 0, which only
// means every cell is sampled.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>

#include "hough_voting_common.h"
#include "hough_voting_ops.h"

namespace posecnn {
namespace hv {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535LL * 32;
constexpr int64_t kNoKey = std::numeric_limits<int64_t>::max();

inline unsigned int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks < kMaxBlocks ? blocks : kMaxBlocks));
}

#define HV_LOOP(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// 1. counts per key and the sort key of every pixel (kNoKey for labels outside [1, C)).
__global__ void count_kernel(const int64_t* lab, int64_t N, int64_t HW, int64_t C, int* counts, int64_t* keys) {
  HV_LOOP(i, N) {
    const int64_t l = lab[i];
    if (l >= 1 && l < C) {
      const int64_t key = (i / HW) * C + l;
      atomicAdd(counts + key, 1);
      keys[i] = key;
    } else {
      keys[i] = kNoKey;
    }
  }
}

struct VoterArgs {
  const int64_t* skeys;   // sorted pixel keys
  const int64_t* spix;    // flat pixel index (b * HW + y * W + x) in sorted order
  const int* counts;
  const int64_t* starts;  // first sorted position of each key
  const float* vertex;
  const float* K;
  const float* ext;
  int64_t C, H, W, label_threshold, skip;
  float factor, inlier;
};

__device__ inline bool voter_at(const VoterArgs& a, int64_t i, Voter& out) {
  const int64_t key = a.skeys[i];
  if (key == kNoKey || a.counts[key] <= a.label_threshold) return false;
  if ((i - a.starts[key]) % a.skip != 0) return false;
  const int64_t HW = a.H * a.W, C = a.C;
  const int64_t pix = a.spix[i], b = pix / HW, cell = pix % HW, c = key % C;
  const float* base = a.vertex + (b * 3 * C + 3 * c) * HW + cell;
  return make_voter(key, cell % a.W, cell / a.W, base[0], base[HW], base[2 * HW], a.ext + 3 * c, a.K + 9 * b,
                    a.factor, a.inlier, a.H, a.W, out);
}

// 2. voter flags, then the voters written at their prefix-sum position.
__global__ void voter_flag_kernel(VoterArgs a, int64_t N, int* flags) {
  HV_LOOP(i, N) {
    Voter v;
    flags[i] = voter_at(a, i, v) ? 1 : 0;
  }
}

__global__ void voter_fill_kernel(VoterArgs a, int64_t N, const int* vpos, Voter* voters) {
  HV_LOOP(i, N) {
    Voter v;
    if (voter_at(a, i, v)) voters[vpos[i] - 1] = v;
  }
}

// Voters of each key: [vstart[key], vend[key]).
__global__ void voter_range_kernel(const int* counts, const int64_t* starts, const int* vpos, int64_t BC,
                                   int64_t* vstart, int64_t* vend) {
  HV_LOOP(key, BC) {
    const int64_t s = starts[key], n = counts[key];
    const int64_t a = s > 0 ? vpos[s - 1] : 0;
    vstart[key] = a;
    vend[key] = n > 0 ? vpos[s + n - 1] : a;
  }
}

// 3. one thread per (voter, row of its window).
struct VoteArgs {
  const Voter* voters;
  const int* total;  // number of voters (device)
  const int64_t* lab;
  int64_t C, H, W, S, needed;
  float inlier;
  bool check;
};

__global__ void vote_kernel(VoteArgs a, int64_t n, int* V) {
  const int64_t total = *a.total;
  HV_LOOP(t, n) {
    const int64_t j = t / a.H;
    if (j >= total) return;
    const Voter& p = a.voters[j];
    const int64_t y = imax(p.y - p.reach, 0) + t % a.H;
    if (y > imin(p.y + p.reach, a.H - 1)) continue;
    int64_t lo, hi;
    if (!row_candidates(p, y, a.W, lo, hi)) continue;
    const LabelIs is_c{a.lab + (p.key / a.C) * a.H * a.W, p.key % a.C, a.W};
    const SameLabel sl{a.check, a.S, a.needed, nullptr, nullptr};
    int* row = V + (p.key * a.H + y) * a.W;
    for (int64_t x = lo; x <= hi; ++x) {
      if (votes_for(p, x, y, a.inlier, sl, is_c, a.H, a.W)) atomicAdd(row + x, 1);
    }
  }
}

// 4. peaks with their statistics.
struct PeakArgs {
  const int* V;  // [BC, H, W]
  const Voter* voters;
  const int64_t* vstart;
  const int64_t* vend;
  const int* counts;
  const int64_t* lab;
  const float* K;
  const float* ext;
  int64_t C, H, W, label_threshold, S, needed, half, vote_threshold;
  float inlier, per_threshold, factor;
  bool check, break_ties;
};

__device__ inline void stats_for(const PeakArgs& a, int64_t key, int64_t x, int64_t y, int64_t votes, Peak& pk) {
  const int64_t b = key / a.C, c = key % a.C;
  pk.key = key;
  pk.votes = votes;
  const LabelIs is_c{a.lab + b * a.H * a.W, c, a.W};
  const SameLabel sl{a.check, a.S, a.needed, nullptr, nullptr};
  peak_stats(a.voters, a.vstart[key], a.vend[key], x, y, a.inlier, sl, is_c, a.H, a.W, a.ext + 3 * c, a.K + 9 * b,
             a.factor, pk);
}

__global__ void multi_peak_kernel(PeakArgs a, int64_t n, Peak* peaks, int* npeak, int64_t cap) {
  const int64_t HW = a.H * a.W;
  HV_LOOP(t, n) {
    const int64_t key = t / HW, cell = t % HW;
    if (key % a.C == 0 || a.counts[key] <= a.label_threshold) continue;
    const int64_t x = cell % a.W, y = cell / a.W;
    if (!is_peak(a.V + key * HW, a.H, a.W, x, y, a.half, a.break_ties, a.vote_threshold)) continue;
    Peak pk;
    stats_for(a, key, x, y, a.V[key * HW + cell], pk);
    if (!box_tests(pk, a.per_threshold)) continue;
    const int slot = atomicAdd(npeak, 1);
    if (slot < cap) peaks[slot] = pk;
  }
}

// Single-instance mode: one block per key, the first row-major maximum (kept when it has votes).
__global__ void single_peak_kernel(PeakArgs a, Peak* peaks, int* npeak) {
  __shared__ int best_val[kThreads];
  __shared__ int64_t best_idx[kThreads];
  const int64_t key = blockIdx.x, HW = a.H * a.W;
  if (key % a.C == 0 || a.counts[key] <= a.label_threshold) return;
  const int* Vk = a.V + key * HW;
  int bv = 0;
  int64_t bi = -1;
  for (int64_t i = threadIdx.x; i < HW; i += blockDim.x) {
    if (bi < 0 || Vk[i] > bv) {
      bv = Vk[i];
      bi = i;
    }
  }
  best_val[threadIdx.x] = bv;
  best_idx[threadIdx.x] = bi;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const int ov = best_val[threadIdx.x + s];
      const int64_t oi = best_idx[threadIdx.x + s];
      const int64_t mi = best_idx[threadIdx.x];
      if (oi >= 0 && (mi < 0 || ov > best_val[threadIdx.x] || (ov == best_val[threadIdx.x] && oi < mi))) {
        best_val[threadIdx.x] = ov;
        best_idx[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0 && best_idx[0] >= 0 && best_val[0] > 0) {
    Peak pk;
    stats_for(a, key, best_idx[0] % a.W, best_idx[0] / a.W, best_val[0], pk);
    peaks[atomicAdd(npeak, 1)] = pk;
  }
}

// 5. sort key (key, y, x) = key * HW + cell; unused slots sort last.
__global__ void sort_key_kernel(const Peak* peaks, const int* npeak, int64_t cap, int64_t HW, int64_t W,
                                int64_t* out) {
  const int64_t n = *npeak;
  HV_LOOP(i, cap) { out[i] = i < n ? peaks[i].key * HW + peaks[i].y * W + peaks[i].x : kNoKey; }
}

__device__ inline int64_t lower_bound(const int64_t* a, int64_t n, int64_t value) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (a[mid] < value) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// Keep the first `per_image` peaks of every image in sorted order (all of them when per_image < 0).
__global__ void keep_kernel(const int64_t* skeys, int64_t cap, int64_t C, int64_t HW, int64_t per_image, int* keep) {
  HV_LOOP(q, cap) {
    if (skeys[q] == kNoKey) {
      keep[q] = 0;
      continue;
    }
    if (per_image < 0) {
      keep[q] = 1;
      continue;
    }
    const int64_t b = skeys[q] / (C * HW);
    const int64_t first = lower_bound(skeys, cap, b * C * HW);
    keep[q] = (q - first < per_image) ? 1 : 0;
  }
}

__global__ void write_kernel(const int* keep, const int* opos, const int64_t* order, const Peak* peaks, int64_t cap,
                             int64_t C, const float* K, float* rois, float* centres, float* trans) {
  HV_LOOP(q, cap) {
    if (!keep[q]) continue;
    const int64_t o = opos[q] - 1;
    const Peak& pk = peaks[order[q]];
    write_row(pk, C, K + 9 * (pk.key / C), rois + o * 7, centres + o * 2, trans + o * 3);
  }
}

__global__ void info_kernel(const int* npeak, const int* opos, int64_t cap, int64_t* info) {
  info[0] = *npeak;
  info[1] = cap > 0 ? opos[cap - 1] : 0;
}

struct Votes {
  at::Tensor V;       // [BC, H, W] int32
  at::Tensor voters;  // bytes
  at::Tensor vstart, vend, counts;
};

Votes compute_votes(const at::Tensor& labels, const at::Tensor& vertex, const at::Tensor& K,
                    const at::Tensor& extents, const Params& p) {
  const int64_t B = labels.size(0), H = labels.size(1), W = labels.size(2), C = extents.size(0);
  const int64_t HW = H * W, N = B * HW, BC = B * C;
  TORCH_CHECK(N < (int64_t{1} << 31), "hough_voting: at most 2^31 - 1 pixels per call");
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const auto i32 = labels.options().dtype(at::kInt);
  at::Tensor counts = at::zeros({BC}, i32);
  at::Tensor keys = at::empty({N}, labels.options());
  count_kernel<<<grid_for(N), kThreads, 0, stream>>>(labels.data_ptr<int64_t>(), N, HW, C, counts.data_ptr<int>(),
                                                     keys.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  auto sorted = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  at::Tensor skeys = std::get<0>(sorted).contiguous(), spix = std::get<1>(sorted).contiguous();
  at::Tensor counts64 = counts.to(at::kLong);
  at::Tensor starts = (at::cumsum(counts64, 0) - counts64).contiguous();
  VoterArgs va{skeys.data_ptr<int64_t>(), spix.data_ptr<int64_t>(), counts.data_ptr<int>(), starts.data_ptr<int64_t>(),
               vertex.data_ptr<float>(), K.data_ptr<float>(), extents.data_ptr<float>(), C, H, W,
               p.label_threshold, p.skip_pixels, p.box_factor, p.inlier_threshold};
  at::Tensor flags = at::empty({N}, i32);
  voter_flag_kernel<<<grid_for(N), kThreads, 0, stream>>>(va, N, flags.data_ptr<int>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor vpos = at::cumsum(flags, 0, at::kInt).contiguous();
  const int64_t cap_v = std::min<int64_t>(N, N / p.skip_pixels + BC);
  at::Tensor voters = at::empty({std::max<int64_t>(cap_v, 1) * static_cast<int64_t>(sizeof(Voter))},
                                labels.options().dtype(at::kByte));
  Voter* vptr = reinterpret_cast<Voter*>(voters.data_ptr<uint8_t>());
  voter_fill_kernel<<<grid_for(N), kThreads, 0, stream>>>(va, N, vpos.data_ptr<int>(), vptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor vstart = at::empty({BC}, labels.options()), vend = at::empty({BC}, labels.options());
  voter_range_kernel<<<grid_for(BC), kThreads, 0, stream>>>(counts.data_ptr<int>(), starts.data_ptr<int64_t>(),
                                                            vpos.data_ptr<int>(), BC, vstart.data_ptr<int64_t>(),
                                                            vend.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  VoteArgs a{vptr, vpos.data_ptr<int>() + (N - 1), labels.data_ptr<int64_t>(), C, H, W, p.same_label_samples,
             p.same_label_needed, p.inlier_threshold, p.check_same_label};
  at::Tensor V = at::zeros({BC, H, W}, i32);
  const int64_t n = cap_v * H;
  vote_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, n, V.data_ptr<int>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return Votes{V, voters, vstart, vend, counts};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> hough_voting_cuda(
    const at::Tensor& labels_in, const at::Tensor& vertex_in, const at::Tensor& intrinsics_in,
    const at::Tensor& extents_in, int64_t label_threshold, int64_t skip_pixels, double inlier_threshold,
    std::optional<int64_t> vote_threshold, double per_threshold, int64_t window, int64_t max_peaks, bool break_ties,
    bool check_same_label, int64_t same_label_samples, double same_label_fraction, double box_factor) {
  check_inputs(labels_in, vertex_in, intrinsics_in, extents_in, at::kCUDA);
  const Params p = make_params(label_threshold, skip_pixels, inlier_threshold, vote_threshold, per_threshold, window,
                               max_peaks, break_ties, check_same_label, same_label_samples, same_label_fraction,
                               box_factor);
  c10::cuda::CUDAGuard guard(labels_in.device());
  const at::Tensor labels = labels_in.contiguous(), vertex = vertex_in.contiguous();
  const at::Tensor K = intrinsics_in.contiguous(), extents = extents_in.contiguous();
  const int64_t B = labels.size(0), H = labels.size(1), W = labels.size(2), C = extents.size(0);
  const int64_t HW = H * W, BC = B * C;
  const auto f32 = labels.options().dtype(at::kFloat);
  if (B * HW == 0) {
    return {at::zeros({0, 7}, f32), at::zeros({0, 2}, f32), at::zeros({0, 3}, f32)};
  }
  TORCH_CHECK(static_cast<double>(BC + 1) * static_cast<double>(HW) < 9.0e18,
              "hough_voting: batch x classes x image too large");
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const auto i32 = labels.options().dtype(at::kInt);
  const Votes votes = compute_votes(labels, vertex, K, extents, p);
  PeakArgs pa{votes.V.data_ptr<int>(), reinterpret_cast<const Voter*>(votes.voters.data_ptr<uint8_t>()),
              votes.vstart.data_ptr<int64_t>(), votes.vend.data_ptr<int64_t>(), votes.counts.data_ptr<int>(),
              labels.data_ptr<int64_t>(), K.data_ptr<float>(), extents.data_ptr<float>(), C, H, W,
              p.label_threshold, p.same_label_samples, p.same_label_needed, p.window / 2, p.vote_threshold,
              p.inlier_threshold, p.per_threshold, p.box_factor, p.check_same_label, p.break_ties};
  const int64_t per_image = p.multi ? std::max<int64_t>(p.max_peaks / B, 1) : -1;
  int64_t cap = p.multi ? std::min<int64_t>(BC * HW, 1 << 12) : BC;
  for (int round = 0;; ++round) {
    at::Tensor buf = at::empty({cap * static_cast<int64_t>(sizeof(Peak))}, labels.options().dtype(at::kByte));
    Peak* peaks = reinterpret_cast<Peak*>(buf.data_ptr<uint8_t>());
    at::Tensor npeak = at::zeros({1}, i32);
    if (p.multi) {
      multi_peak_kernel<<<grid_for(BC * HW), kThreads, 0, stream>>>(pa, BC * HW, peaks, npeak.data_ptr<int>(), cap);
    } else {
      single_peak_kernel<<<static_cast<unsigned int>(BC), kThreads, 0, stream>>>(pa, peaks, npeak.data_ptr<int>());
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor key = at::empty({cap}, labels.options());
    sort_key_kernel<<<grid_for(cap), kThreads, 0, stream>>>(peaks, npeak.data_ptr<int>(), cap, HW, W,
                                                            key.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    auto s = at::sort(key, /*stable=*/false, 0, false);
    at::Tensor skeys = std::get<0>(s).contiguous(), order = std::get<1>(s).contiguous();
    at::Tensor keep = at::empty({cap}, i32);
    keep_kernel<<<grid_for(cap), kThreads, 0, stream>>>(skeys.data_ptr<int64_t>(), cap, C, HW, per_image,
                                                        keep.data_ptr<int>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor opos = at::cumsum(keep, 0, at::kInt).contiguous();
    at::Tensor rois = at::empty({cap, 7}, f32), centres = at::empty({cap, 2}, f32), trans = at::empty({cap, 3}, f32);
    write_kernel<<<grid_for(cap), kThreads, 0, stream>>>(keep.data_ptr<int>(), opos.data_ptr<int>(),
                                                         order.data_ptr<int64_t>(), peaks, cap, C, K.data_ptr<float>(),
                                                         rois.data_ptr<float>(), centres.data_ptr<float>(),
                                                         trans.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor info = at::empty({2}, labels.options());
    info_kernel<<<1, 1, 0, stream>>>(npeak.data_ptr<int>(), opos.data_ptr<int>(), cap, info.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const at::Tensor host = info.cpu();  // the one synchronisation
    const int64_t found = host.data_ptr<int64_t>()[0], n_out = host.data_ptr<int64_t>()[1];
    if (found > cap) {  // peak buffer overflowed: redo this stage with room for all of them
      TORCH_CHECK(round == 0, "hough_voting: peak count changed between rounds");
      cap = found;
      continue;
    }
    return {rois.narrow(0, 0, n_out).clone(), centres.narrow(0, 0, n_out).clone(),
            trans.narrow(0, 0, n_out).clone()};
  }
}

at::Tensor hough_vote_counts_cuda(const at::Tensor& labels_in, const at::Tensor& vertex_in,
                                  const at::Tensor& intrinsics_in, const at::Tensor& extents_in,
                                  int64_t label_threshold, int64_t skip_pixels, double inlier_threshold,
                                  bool check_same_label, int64_t same_label_samples, double same_label_fraction,
                                  double box_factor) {
  check_inputs(labels_in, vertex_in, intrinsics_in, extents_in, at::kCUDA);
  const Params p = make_params(label_threshold, skip_pixels, inlier_threshold, std::nullopt, 0.0, 1, 1, true,
                               check_same_label, same_label_samples, same_label_fraction, box_factor);
  c10::cuda::CUDAGuard guard(labels_in.device());
  const at::Tensor labels = labels_in.contiguous(), vertex = vertex_in.contiguous();
  const at::Tensor K = intrinsics_in.contiguous(), extents = extents_in.contiguous();
  const int64_t B = labels.size(0), H = labels.size(1), W = labels.size(2), C = extents.size(0);
  if (B * H * W == 0) return at::zeros({B, C, H, W}, labels.options().dtype(at::kInt));
  return compute_votes(labels, vertex, K, extents, p).V.view({B, C, H, W});
}

}  // namespace
}  // namespace hv
}  // namespace posecnn

TORCH_LIBRARY_IMPL(posecnn, CUDA, m) {
  m.impl("hough_voting", &posecnn::hv::hough_voting_cuda);
  m.impl("hough_vote_counts", &posecnn::hv::hough_vote_counts_cuda);
}
