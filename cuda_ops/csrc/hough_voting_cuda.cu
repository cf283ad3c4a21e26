// PoseCNN Hough voting on the GPU (definition: docs/voting.md; reference: posecnn_core/voting.py).
//
// Pipeline, all on the current stream without host round trips; one synchronisation at the end reads the number of
// output rows (and the candidate count, to redo the candidate stage in the rare case its buffer overflowed):
//   1. per (image, class) pixel counts; stable sort of the pixels by key b * C + c (row-major within a key);
//   2. voter flags (rank % skip == 0, valid direction/depth), prefix sum, voter array grouped by key;
//   3. one thread per (voter, row): the row's inlier interval (common header) -> atomicAdd into a difference array
//      (or, with the same-label rule, per-cell atomicAdd); a prefix sum over each row gives the vote map;
//   4. centres (window maxima or per-class argmax) with their statistics, appended to a fixed-capacity buffer;
//   5. sort candidates by (key, votes desc, y, x); greedy NMS with one block per (image, class);
//   6. max_instances per image via a second sort; compaction into the output buffers.
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

__device__ inline double class_extent(const double* ext, int64_t c) {
  const double a = ext[c * 3], b = ext[c * 3 + 1], d = ext[c * 3 + 2];
  const double m = a > b ? a : b;
  return m > d ? m : d;
}

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
  const int64_t* skeys;  // sorted pixel keys
  const int64_t* spix;   // flat pixel index (b * HW + y * W + x) in sorted order
  const int* counts;
  const int64_t* starts;  // first sorted position of each key
  const float* vertex;
  const double* K;
  const double* ext;
  int64_t C, H, W, label_threshold, skip;
  double radius_factor, cos_t, sin_t;
};

__device__ inline bool voter_at(const VoterArgs& a, int64_t i, Voter& out) {
  const int64_t key = a.skeys[i];
  if (key == kNoKey || a.counts[key] <= a.label_threshold) return false;
  if ((i - a.starts[key]) % a.skip != 0) return false;
  const int64_t HW = a.H * a.W, C = a.C;
  const int64_t pix = a.spix[i], b = pix / HW, cell = pix % HW, c = key % C;
  const float* base = a.vertex + (b * 3 * C + 3 * c) * HW + cell;
  const double* k = a.K + b * 9;
  return make_voter(key, cell % a.W, cell / a.W, base[0], base[HW], base[2 * HW], k[0], k[4], class_extent(a.ext, c),
                    a.radius_factor, a.cos_t, a.sin_t, a.H, a.W, out);
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

// 3. one thread per (voter, row).
struct VoteArgs {
  const Voter* voters;
  const int* total;  // number of voters (device)
  const int64_t* lab;
  int64_t C, H, W, S;
  double thr, frac;
  bool check;
};

__global__ void vote_kernel(VoteArgs a, int64_t n, int* out) {
  const int64_t total = *a.total;
  HV_LOOP(t, n) {
    const int64_t j = t / a.H;
    if (j >= total) return;
    const Voter& p = a.voters[j];
    int64_t y0, y1;
    row_range(p, a.thr, a.H, y0, y1);
    const int64_t y = y0 + t % a.H;
    if (y > y1) continue;
    int64_t lo, hi;
    if (!row_interval(p, y, a.W, a.thr, lo, hi)) continue;
    if (!a.check) {
      int* row = out + (p.key * a.H + y) * (a.W + 1);
      atomicAdd(row + lo, 1);
      atomicAdd(row + hi + 1, -1);
      continue;
    }
    const int64_t b = p.key / a.C, c = p.key % a.C;
    const int64_t* lab_b = a.lab + b * a.H * a.W;
    int* row = out + (p.key * a.H + y) * a.W;
    for (int64_t x = lo; x <= hi; ++x) {
      if (same_label(lab_b, a.H, a.W, c, p.u, p.v, x, y, a.S, a.frac)) atomicAdd(row + x, 1);
    }
  }
}

// 4. centres and their statistics.
struct CandArgs {
  const int* V;  // [BC, H, W]
  const Voter* voters;
  const int64_t* vstart;
  const int64_t* vend;
  const int* counts;
  const int64_t* lab;
  int64_t C, H, W, label_threshold, S, half, vote_threshold;
  double thr, frac, per_threshold;
  bool check;
};

__device__ inline void stats_for(const CandArgs& a, int64_t key, int64_t x, int64_t y, int64_t votes, Candidate& cand) {
  const int64_t b = key / a.C, c = key % a.C;
  cand.key = key;
  cand.votes = votes;
  centre_stats(a.voters, a.vstart[key], a.vend[key], x, y, a.thr, a.check, a.lab + b * a.H * a.W, a.H, a.W, c, a.S,
               a.frac, cand);
}

__global__ void multi_candidate_kernel(CandArgs a, int64_t n, Candidate* cands, int* ncand, int64_t cap) {
  const int64_t HW = a.H * a.W;
  HV_LOOP(t, n) {
    const int64_t key = t / HW, cell = t % HW;
    if (key % a.C == 0 || a.counts[key] <= a.label_threshold) continue;
    const int* Vk = a.V + key * HW;
    const int val = Vk[cell];
    if (val <= a.vote_threshold) continue;
    const int64_t x = cell % a.W, y = cell / a.W;
    bool is_max = true;
    for (int64_t yy = imax(y - a.half, 0); yy <= imin(y + a.half, a.H - 1) && is_max; ++yy) {
      for (int64_t xx = imax(x - a.half, 0); xx <= imin(x + a.half, a.W - 1); ++xx) {
        if (Vk[yy * a.W + xx] > val) {
          is_max = false;
          break;
        }
      }
    }
    if (!is_max) continue;
    Candidate cand;
    stats_for(a, key, x, y, val, cand);
    if (!dense_enough(cand, a.per_threshold)) continue;
    const int slot = atomicAdd(ncand, 1);
    if (slot < cap) cands[slot] = cand;
  }
}

// Single-instance mode: one block per key, first row-major argmax.
__global__ void single_candidate_kernel(CandArgs a, Candidate* cands, int* ncand) {
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
    Candidate cand;
    stats_for(a, key, best_idx[0] % a.W, best_idx[0] / a.W, best_val[0], cand);
    cands[atomicAdd(ncand, 1)] = cand;
  }
}

// 5. sort keys (key, votes desc, y, x); unused slots sort last.
__global__ void sort_key_kernel(const Candidate* cands, const int* ncand, int64_t cap, int64_t HW, int64_t W,
                                int64_t* out) {
  const int64_t n = *ncand;
  HV_LOOP(i, cap) {
    if (i >= n) {
      out[i] = kNoKey;
    } else {
      const Candidate& c = cands[i];
      out[i] = (c.key * (HW + 1) + (HW - c.votes)) * HW + (c.y * W + c.x);
    }
  }
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

// Greedy NMS per key: one block per key over its sorted segment; alive[] is indexed by sorted position.
__global__ void nms_kernel(const int64_t* skeys, const int64_t* order, const Candidate* cands, int64_t cap,
                           int64_t span, double iou, unsigned char* alive) {
  __shared__ int64_t seg[2];
  const int64_t key = blockIdx.x;
  if (threadIdx.x == 0) {
    seg[0] = lower_bound(skeys, cap, key * span);
    seg[1] = lower_bound(skeys, cap, (key + 1) * span);
  }
  __syncthreads();
  const int64_t s = seg[0], e = seg[1];
  for (int64_t i = s; i < e; ++i) {
    __syncthreads();
    if (!alive[i]) continue;
    const Candidate& ci = cands[order[i]];
    for (int64_t j = i + 1 + threadIdx.x; j < e; j += blockDim.x) {
      if (alive[j] && box_iou(ci, cands[order[j]]) > iou) alive[j] = 0;
    }
  }
}

// 6. per-image ranking key: (b, votes desc, sorted position).
__global__ void image_key_kernel(const int64_t* skeys, const int64_t* order, const Candidate* cands,
                                 const unsigned char* alive, int64_t cap, int64_t C, int64_t HW, int64_t* out) {
  HV_LOOP(p, cap) {
    if (skeys[p] == kNoKey || !alive[p]) {
      out[p] = kNoKey;
    } else {
      const Candidate& c = cands[order[p]];
      out[p] = ((c.key / C) * (HW + 1) + (HW - c.votes)) * cap + p;
    }
  }
}

__global__ void image_keep_kernel(const int64_t* skeys2, const int64_t* order2, int64_t cap, int64_t HW,
                                  int64_t max_instances, int* keep) {
  HV_LOOP(q, cap) {
    if (skeys2[q] == kNoKey) continue;
    const int64_t span = (HW + 1) * cap;
    const int64_t b = skeys2[q] / span;
    const int64_t first = lower_bound(skeys2, cap, b * span);
    keep[order2[q]] = (q - first < max_instances) ? 1 : 0;
  }
}

__global__ void write_kernel(const int* keep, const int* opos, const int64_t* order, const Candidate* cands,
                             int64_t cap, int64_t C, const double* K, float* rois, float* centres, float* trans) {
  HV_LOOP(p, cap) {
    if (!keep[p]) continue;
    const int64_t o = opos[p] - 1;
    write_row(cands[order[p]], C, K, rois + o * 7, centres + o * 2, trans + o * 3);
  }
}

__global__ void info_kernel(const int* ncand, const int* opos, int64_t cap, int64_t* info) {
  info[0] = *ncand;
  info[1] = cap > 0 ? opos[cap - 1] : 0;
}

struct Votes {
  at::Tensor V;        // [BC, H, W] int32
  at::Tensor voters;   // bytes
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
               vertex.data_ptr<float>(), K.data_ptr<double>(), extents.data_ptr<double>(), C, H, W,
               p.label_threshold, p.skip_pixels, p.radius_factor, p.cos_t(), p.sin_t()};
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
             p.inlier_threshold, p.same_label_fraction, p.check_same_label};
  const int64_t n = cap_v * H;
  at::Tensor V;
  if (p.check_same_label) {
    V = at::zeros({BC, H, W}, i32);
    vote_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, n, V.data_ptr<int>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  } else {
    at::Tensor diff = at::zeros({BC, H, W + 1}, i32);
    vote_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, n, diff.data_ptr<int>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    V = at::cumsum(diff, 2, at::kInt).narrow(2, 0, W).contiguous();
  }
  return Votes{V, voters, vstart, vend, counts};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> hough_voting_cuda(
    const at::Tensor& labels_in, const at::Tensor& vertex_in, const at::Tensor& intrinsics_in,
    const at::Tensor& extents_in, int64_t label_threshold, int64_t skip_pixels, double inlier_threshold,
    std::optional<int64_t> vote_threshold, double per_threshold, int64_t window, int64_t max_instances,
    double nms_iou, bool check_same_label, int64_t same_label_samples, double same_label_fraction,
    double radius_factor) {
  check_inputs(labels_in, vertex_in, intrinsics_in, extents_in, at::kCUDA);
  const Params p = make_params(label_threshold, skip_pixels, inlier_threshold, vote_threshold, per_threshold, window,
                               max_instances, nms_iou, check_same_label, same_label_samples, same_label_fraction,
                               radius_factor);
  c10::cuda::CUDAGuard guard(labels_in.device());
  const at::Tensor labels = labels_in.contiguous(), vertex = vertex_in.contiguous();
  const at::Tensor K = intrinsics_in.contiguous(), extents = extents_in.contiguous();
  const int64_t B = labels.size(0), H = labels.size(1), W = labels.size(2), C = extents.size(0);
  const int64_t HW = H * W, BC = B * C;
  const auto f32 = labels.options().dtype(at::kFloat);
  if (B * HW == 0) {
    return {at::zeros({0, 7}, f32), at::zeros({0, 2}, f32), at::zeros({0, 3}, f32)};
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const auto i32 = labels.options().dtype(at::kInt);
  const Votes votes = compute_votes(labels, vertex, K, extents, p);
  CandArgs ca{votes.V.data_ptr<int>(), reinterpret_cast<const Voter*>(votes.voters.data_ptr<uint8_t>()),
              votes.vstart.data_ptr<int64_t>(), votes.vend.data_ptr<int64_t>(), votes.counts.data_ptr<int>(),
              labels.data_ptr<int64_t>(), C, H, W, p.label_threshold, p.same_label_samples, p.window / 2,
              p.vote_threshold, p.inlier_threshold, p.same_label_fraction, p.per_threshold, p.check_same_label};
  int64_t cap = p.multi ? std::min<int64_t>(BC * HW, 1 << 16) : BC;
  const double span_f = static_cast<double>(HW + 1) * static_cast<double>(HW);
  TORCH_CHECK(static_cast<double>(BC + 1) * span_f < 9.0e18, "hough_voting: batch x classes x image too large");
  for (int round = 0;; ++round) {
    TORCH_CHECK(static_cast<double>(B + 1) * static_cast<double>(HW + 1) * static_cast<double>(cap) < 9.0e18,
                "hough_voting: too many centre candidates");
    at::Tensor cand_buf = at::empty({cap * static_cast<int64_t>(sizeof(Candidate))}, labels.options().dtype(at::kByte));
    Candidate* cands = reinterpret_cast<Candidate*>(cand_buf.data_ptr<uint8_t>());
    at::Tensor ncand = at::zeros({1}, i32);
    if (p.multi) {
      multi_candidate_kernel<<<grid_for(BC * HW), kThreads, 0, stream>>>(ca, BC * HW, cands, ncand.data_ptr<int>(),
                                                                          cap);
    } else {
      single_candidate_kernel<<<static_cast<unsigned int>(BC), kThreads, 0, stream>>>(ca, cands,
                                                                                     ncand.data_ptr<int>());
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor key1 = at::empty({cap}, labels.options());
    sort_key_kernel<<<grid_for(cap), kThreads, 0, stream>>>(cands, ncand.data_ptr<int>(), cap, HW, W,
                                                            key1.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    auto s1 = at::sort(key1, /*stable=*/false, 0, false);
    at::Tensor skeys = std::get<0>(s1).contiguous(), order = std::get<1>(s1).contiguous();
    at::Tensor alive = at::ones({cap}, labels.options().dtype(at::kByte));
    nms_kernel<<<static_cast<unsigned int>(BC), kThreads, 0, stream>>>(
        skeys.data_ptr<int64_t>(), order.data_ptr<int64_t>(), cands, cap, (HW + 1) * HW, p.nms_iou,
        alive.data_ptr<uint8_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor key2 = at::empty({cap}, labels.options());
    image_key_kernel<<<grid_for(cap), kThreads, 0, stream>>>(skeys.data_ptr<int64_t>(), order.data_ptr<int64_t>(),
                                                             cands, alive.data_ptr<uint8_t>(), cap, C, HW,
                                                             key2.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    auto s2 = at::sort(key2, /*stable=*/false, 0, false);
    at::Tensor skeys2 = std::get<0>(s2).contiguous(), order2 = std::get<1>(s2).contiguous();
    at::Tensor keep = at::zeros({cap}, i32);
    image_keep_kernel<<<grid_for(cap), kThreads, 0, stream>>>(skeys2.data_ptr<int64_t>(), order2.data_ptr<int64_t>(),
                                                              cap, HW, p.max_instances, keep.data_ptr<int>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor opos = at::cumsum(keep, 0, at::kInt).contiguous();
    at::Tensor rois = at::empty({cap, 7}, f32), centres = at::empty({cap, 2}, f32), trans = at::empty({cap, 3}, f32);
    write_kernel<<<grid_for(cap), kThreads, 0, stream>>>(keep.data_ptr<int>(), opos.data_ptr<int>(),
                                                         order.data_ptr<int64_t>(), cands, cap, C, K.data_ptr<double>(),
                                                         rois.data_ptr<float>(), centres.data_ptr<float>(),
                                                         trans.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor info = at::empty({2}, labels.options());
    info_kernel<<<1, 1, 0, stream>>>(ncand.data_ptr<int>(), opos.data_ptr<int>(), cap, info.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const at::Tensor host = info.cpu();  // the one synchronisation
    const int64_t found = host.data_ptr<int64_t>()[0], n_out = host.data_ptr<int64_t>()[1];
    if (found > cap) {  // candidate buffer overflowed: redo this stage with room for all of them
      TORCH_CHECK(round == 0, "hough_voting: candidate count changed between rounds");
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
                                  double radius_factor) {
  check_inputs(labels_in, vertex_in, intrinsics_in, extents_in, at::kCUDA);
  const Params p = make_params(label_threshold, skip_pixels, inlier_threshold, std::nullopt, 0.0, 1, 1, 0.5,
                               check_same_label, same_label_samples, same_label_fraction, radius_factor);
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
