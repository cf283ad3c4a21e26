// Depth-refinement CUDA kernels for posecnn::model_visibility and posecnn::model_grid_nearest (schemas in
// refine_cpu.cpp). The per-element arithmetic lives in refine_common.h, shared with the CPU operators.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>

#include "refine_common.h"
#include "refine_ops.h"

namespace posecnn {
namespace refine {
namespace {

constexpr int kThreads = 256;

inline unsigned int num_blocks(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t(1) << 20)));
}

// Least of two non-negative floats through their bit patterns (ordered like the values for z > 0).
__device__ __forceinline__ void atomic_min_positive(float* address, float value) {
  atomicMin(reinterpret_cast<int*>(address), __float_as_int(value));
}

// One block per element: the block reduces the in-front points' pixel bounds, splats their depths into the
// element's z-buffer (zbuf: kVisGrid² floats, +inf on entry) and tests every point against its cell.
__global__ void visibility_kernel(const float* __restrict__ points, const bool* __restrict__ valid,
                                  const float* __restrict__ K, int64_t N, float margin, float* __restrict__ zbuf_all,
                                  bool* __restrict__ out) {
  __shared__ float s_umin[kThreads], s_umax[kThreads], s_vmin[kThreads], s_vmax[kThreads];
  __shared__ int64_t s_count[kThreads];
  const int64_t b = blockIdx.x;
  const float* s = points + 3 * N * b;
  const bool* ok = valid + N * b;
  bool* o = out + N * b;
  float* zbuf = zbuf_all + kVisGrid * kVisGrid * b;
  const Camera cam = camera_of(K);
  const float big = 3.402823466e38f;
  float umin = big, vmin = big, umax = -big, vmax = -big;
  int64_t count = 0;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    const float* p = s + 3 * n;
    if (!in_front(ok[n], p[2])) continue;
    const float u = project_u(cam, p[0], p[1], p[2]), v = project_v(cam, p[1], p[2]);
    umin = min_of(umin, u);
    umax = max_of(umax, u);
    vmin = min_of(vmin, v);
    vmax = max_of(vmax, v);
    ++count;
  }
  s_umin[threadIdx.x] = umin;
  s_umax[threadIdx.x] = umax;
  s_vmin[threadIdx.x] = vmin;
  s_vmax[threadIdx.x] = vmax;
  s_count[threadIdx.x] = count;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      const int j = threadIdx.x + stride;
      s_umin[threadIdx.x] = min_of(s_umin[threadIdx.x], s_umin[j]);
      s_umax[threadIdx.x] = max_of(s_umax[threadIdx.x], s_umax[j]);
      s_vmin[threadIdx.x] = min_of(s_vmin[threadIdx.x], s_vmin[j]);
      s_vmax[threadIdx.x] = max_of(s_vmax[threadIdx.x], s_vmax[j]);
      s_count[threadIdx.x] += s_count[j];
    }
    __syncthreads();
  }
  const int64_t total = s_count[0];
  if (total == 0) {
    for (int64_t n = threadIdx.x; n < N; n += blockDim.x) o[n] = false;
    return;
  }
  umin = s_umin[0];
  vmin = s_vmin[0];
  const float span_u = max_of(sub_rn(s_umax[0], umin), 0.0f), span_v = max_of(sub_rn(s_vmax[0], vmin), 0.0f);
  const float cell = splat_cell(span_u, span_v, static_cast<float>(total));
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    const float* p = s + 3 * n;
    if (!in_front(ok[n], p[2])) continue;
    const int64_t cu = splat_index(project_u(cam, p[0], p[1], p[2]), umin, cell);
    const int64_t cv = splat_index(project_v(cam, p[1], p[2]), vmin, cell);
    atomic_min_positive(zbuf + cv * kVisGrid + cu, p[2]);
  }
  __syncthreads();
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    const float* p = s + 3 * n;
    bool vis = false;
    if (in_front(ok[n], p[2])) {
      const int64_t cu = splat_index(project_u(cam, p[0], p[1], p[2]), umin, cell);
      const int64_t cv = splat_index(project_v(cam, p[1], p[2]), vmin, cell);
      vis = visible_at(p[2], zbuf[cv * kVisGrid + cu], margin, cell, cam.fx);
    }
    o[n] = vis;
  }
}

__global__ void grid_nearest_kernel(int64_t total, int64_t M, int64_t N, int64_t C, const float* __restrict__ q,
                                    const float* __restrict__ s, const bool* __restrict__ s_ok,
                                    const float* __restrict__ R, const float* __restrict__ t,
                                    const double* __restrict__ meta, const int64_t* __restrict__ table,
                                    int64_t* __restrict__ index, float* __restrict__ dist) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t b = i / M;
    const Grid g = grid_of(meta + 8 * b);
    const int64_t row = grid_row(g, q + 3 * i, R + 9 * b, t + 3 * b);
    nearest_candidate(table + C * row, C, s + 3 * N * b, s_ok + N * b, N, q + 3 * i, index + i, dist + i);
  }
}

// One thread per element: its points are summed in order, as on the CPU.
__global__ void normal_equations_kernel(int64_t B, int64_t M, const float* __restrict__ q, const float* __restrict__ m,
                                        const float* __restrict__ normals, const bool* __restrict__ normal_ok,
                                        const float* __restrict__ w, const float* __restrict__ c,
                                        const float* __restrict__ point_weight, bool plane, double* __restrict__ H,
                                        double* __restrict__ g) {
  for (int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; b < B;
       b += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    icp_normal_equations(q + 3 * M * b, m + 3 * M * b, normals + 3 * M * b, normal_ok + M * b, w + M * b, c + 3 * b,
                         point_weight[b], plane, M, H + 36 * b, g + 6 * b);
  }
}

at::Tensor visibility_cuda(const at::Tensor& points_in, const at::Tensor& valid_in, const at::Tensor& K_in,
                           double margin) {
  check_visibility_args(points_in, valid_in, K_in, at::kCUDA);
  const c10::cuda::CUDAGuard guard(points_in.device());
  const at::Tensor points = points_in.contiguous(), valid = valid_in.contiguous(), K = K_in.contiguous();
  const int64_t B = points.size(0), N = points.size(1);
  at::Tensor out = at::empty({B, N}, valid.options());
  if (B == 0 || N == 0) return out;
  at::Tensor zbuf = at::full({B, kVisGrid * kVisGrid}, INFINITY, points.options());
  visibility_kernel<<<static_cast<unsigned int>(B), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      points.data_ptr<float>(), valid.data_ptr<bool>(), K.data_ptr<float>(), N, static_cast<float>(margin),
      zbuf.data_ptr<float>(), out.data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor> grid_nearest_cuda(const at::Tensor& q_in, const at::Tensor& s_in,
                                                     const at::Tensor& s_ok_in, const at::Tensor& R_in,
                                                     const at::Tensor& t_in, const at::Tensor& meta_in,
                                                     const at::Tensor& table_in) {
  check_nearest_args(q_in, s_in, s_ok_in, R_in, t_in, meta_in, table_in, at::kCUDA);
  const c10::cuda::CUDAGuard guard(q_in.device());
  const at::Tensor q = q_in.contiguous(), s = s_in.contiguous(), s_ok = s_ok_in.contiguous();
  const at::Tensor R = R_in.contiguous(), t = t_in.contiguous(), meta = meta_in.contiguous();
  const at::Tensor table = table_in.contiguous();
  const int64_t B = q.size(0), M = q.size(1), N = s.size(1), T = table.size(0), C = table.size(1);
  // The grid rows are checked on the host (a small copy): a row outside the table would read out of bounds.
  check_grid_meta(meta.cpu().data_ptr<double>(), B, T);
  at::Tensor index = at::empty({B, M}, q.options().dtype(at::kLong));
  at::Tensor dist = at::empty({B, M}, q.options());
  if (B == 0 || M == 0) return {index, dist};
  grid_nearest_kernel<<<num_blocks(B * M), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      B * M, M, N, C, q.data_ptr<float>(), s.data_ptr<float>(), s_ok.data_ptr<bool>(), R.data_ptr<float>(),
      t.data_ptr<float>(), meta.data_ptr<double>(), table.data_ptr<int64_t>(), index.data_ptr<int64_t>(),
      dist.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {index, dist};
}

std::tuple<at::Tensor, at::Tensor> normal_equations_cuda(const at::Tensor& q_in, const at::Tensor& m_in,
                                                         const at::Tensor& normals_in, const at::Tensor& normal_ok_in,
                                                         const at::Tensor& w_in, const at::Tensor& c_in,
                                                         const at::Tensor& point_weight_in, bool plane) {
  check_normal_equation_args(q_in, m_in, normals_in, normal_ok_in, w_in, c_in, point_weight_in, at::kCUDA);
  const c10::cuda::CUDAGuard guard(q_in.device());
  const at::Tensor q = q_in.contiguous(), m = m_in.contiguous(), normals = normals_in.contiguous();
  const at::Tensor normal_ok = normal_ok_in.contiguous(), w = w_in.contiguous(), c = c_in.contiguous();
  const at::Tensor pw = point_weight_in.contiguous();
  const int64_t B = q.size(0), M = q.size(1);
  at::Tensor H = at::empty({B, 6, 6}, q.options().dtype(at::kDouble));
  at::Tensor g = at::empty({B, 6}, q.options().dtype(at::kDouble));
  if (B == 0) return {H, g};
  normal_equations_kernel<<<num_blocks(B), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      B, M, q.data_ptr<float>(), m.data_ptr<float>(), normals.data_ptr<float>(), normal_ok.data_ptr<bool>(),
      w.data_ptr<float>(), c.data_ptr<float>(), pw.data_ptr<float>(), plane, H.data_ptr<double>(),
      g.data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {H, g};
}

}  // namespace
}  // namespace refine
}  // namespace posecnn

TORCH_LIBRARY_IMPL(posecnn, CUDA, m) {
  m.impl("model_visibility", &posecnn::refine::visibility_cuda);
  m.impl("model_grid_nearest", &posecnn::refine::grid_nearest_cuda);
  m.impl("icp_normal_equations", &posecnn::refine::normal_equations_cuda);
}
