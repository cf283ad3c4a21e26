// RoI max pooling CUDA kernels for the posecnn::roi_max_pool_* operators (schema in roi_pool_cpu.cpp).
// The per-element arithmetic lives in roi_pool_common.h, shared with the CPU implementation.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "roi_pool_checks.h"
#include "roi_pool_common.h"

namespace posecnn {
namespace roi_pool {
namespace {

constexpr int kThreads = 256;

inline unsigned int num_blocks(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::min<int64_t>(blocks, int64_t(1) << 20));  // grid-stride loops cover the rest
}

template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(int64_t n, const scalar_t* __restrict__ features, const acc_t* __restrict__ rois,
                               acc_t spatial_scale, int64_t batch, int64_t channels, int64_t height, int64_t width,
                               int64_t pooled_h, int64_t pooled_w, scalar_t* __restrict__ output,
                               int32_t* __restrict__ argmax) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    forward_element(i, features, rois, spatial_scale, batch, channels, height, width, pooled_h, pooled_w, output,
                    argmax);
  }
}

// One thread per pooled element: add its gradient to the argmax of its input plane (atomics: bins overlap).
template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(int64_t n, const scalar_t* __restrict__ grad, const int32_t* __restrict__ argmax,
                                const acc_t* __restrict__ rois, int64_t batch, int64_t channels, int64_t plane_size,
                                int64_t per_plane, acc_t* __restrict__ grad_input) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int32_t a = argmax[i];
    if (!routes_gradient(a, plane_size)) continue;
    const int64_t c = (i / per_plane) % channels;
    const int64_t r = i / (per_plane * channels);
    const int b = roi_batch_index(rois + 5 * r, batch);
    if (b < 0) continue;
    gpuAtomicAddNoReturn(grad_input + (b * channels + c) * plane_size + a, static_cast<acc_t>(grad[i]));
  }
}

std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& features_in, const at::Tensor& rois_in,
                                                int64_t pooled_h, int64_t pooled_w, double spatial_scale) {
  TORCH_CHECK(features_in.is_cuda(), "roi_max_pool_forward (CUDA): features must be a CUDA tensor");
  const at::Tensor rois = check_forward_args(features_in, rois_in, pooled_h, pooled_w, spatial_scale);
  const c10::cuda::CUDAGuard guard(features_in.device());
  const at::Tensor features = features_in.contiguous();
  const int64_t num_rois = rois.size(0);
  const int64_t batch = features.size(0), channels = features.size(1);
  const int64_t height = features.size(2), width = features.size(3);
  at::Tensor output = at::empty({num_rois, channels, pooled_h, pooled_w}, features.options());
  at::Tensor argmax = at::empty({num_rois, channels, pooled_h, pooled_w}, features.options().dtype(at::kInt));
  const int64_t n = output.numel();
  if (n == 0) return {output, argmax};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "roi_max_pool_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t, acc_t><<<num_blocks(n), kThreads, 0, stream>>>(
        n, features.const_data_ptr<scalar_t>(), rois.const_data_ptr<acc_t>(), static_cast<acc_t>(spatial_scale),
        batch, channels, height, width, pooled_h, pooled_w, output.mutable_data_ptr<scalar_t>(),
        argmax.mutable_data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {output, argmax};
}

at::Tensor backward_cuda(const at::Tensor& grad_in, const at::Tensor& argmax_in, const at::Tensor& rois_in,
                         int64_t batch, int64_t channels, int64_t height, int64_t width) {
  TORCH_CHECK(grad_in.is_cuda(), "roi_max_pool_backward (CUDA): grad must be a CUDA tensor");
  check_backward_args(grad_in, argmax_in, rois_in, batch, channels, height, width);
  const c10::cuda::CUDAGuard guard(grad_in.device());
  // atomics make the summation order, hence the last bits of float sums, run-dependent
  at::globalContext().alertNotDeterministic("posecnn::roi_max_pool_backward (CUDA)");
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor argmax = argmax_in.contiguous();
  const auto acc_type = at::toOpMathType(grad.scalar_type());
  const at::Tensor rois = rois_in.to(acc_type).contiguous();
  at::Tensor grad_input = at::zeros({batch, channels, height, width}, grad.options().dtype(acc_type));
  const int64_t n = grad.numel();
  if (n > 0 && grad_input.numel() > 0) {
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_max_pool_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      backward_kernel<scalar_t, acc_t><<<num_blocks(n), kThreads, 0, stream>>>(
          n, grad.const_data_ptr<scalar_t>(), argmax.const_data_ptr<int32_t>(), rois.const_data_ptr<acc_t>(), batch,
          channels, height * width, grad.size(2) * grad.size(3), grad_input.mutable_data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return grad_input.scalar_type() == grad.scalar_type() ? grad_input : grad_input.to(grad.scalar_type());
}

}  // namespace
}  // namespace roi_pool
}  // namespace posecnn

TORCH_LIBRARY_IMPL(posecnn, CUDA, m) {
  m.impl("roi_max_pool_forward", &posecnn::roi_pool::forward_cuda);
  m.impl("roi_max_pool_backward", &posecnn::roi_pool::backward_cuda);
}
