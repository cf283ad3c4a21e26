// RoI max pooling on the CPU (at::parallel_for), and the schema of the posecnn::roi_max_pool_* operators.
// The per-element arithmetic lives in roi_pool_common.h, shared with the CUDA kernels.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "roi_pool_checks.h"
#include "roi_pool_common.h"

namespace posecnn {
namespace roi_pool {
namespace {

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& features_in, const at::Tensor& rois_in,
                                               int64_t pooled_h, int64_t pooled_w, double spatial_scale) {
  const at::Tensor rois = check_forward_args(features_in, rois_in, pooled_h, pooled_w, spatial_scale);
  TORCH_CHECK(features_in.device().is_cpu(), "roi_max_pool_forward (CPU): features must be on the CPU");
  const at::Tensor features = features_in.contiguous();
  const int64_t num_rois = rois.size(0);
  const int64_t batch = features.size(0), channels = features.size(1);
  const int64_t height = features.size(2), width = features.size(3);
  at::Tensor output = at::empty({num_rois, channels, pooled_h, pooled_w}, features.options());
  at::Tensor argmax = at::empty({num_rois, channels, pooled_h, pooled_w}, features.options().dtype(at::kInt));
  if (output.numel() == 0) return {output, argmax};

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "roi_max_pool_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* feat = features.const_data_ptr<scalar_t>();
    const acc_t* roi = rois.const_data_ptr<acc_t>();
    scalar_t* out = output.mutable_data_ptr<scalar_t>();
    int32_t* arg = argmax.mutable_data_ptr<int32_t>();
    const acc_t scale = static_cast<acc_t>(spatial_scale);
    // one task = whole output planes (r, c); each output element is written by exactly one thread
    at::parallel_for(0, num_rois * channels, 4, [&](int64_t begin, int64_t end) {
      for (int64_t plane = begin; plane < end; ++plane) {
        const int64_t r = plane / channels, c = plane % channels;
        const RoiGeometry<acc_t> g = roi_geometry(roi + 5 * r, scale, batch, pooled_h, pooled_w);
        int64_t i = plane * pooled_h * pooled_w;
        for (int64_t ph = 0; ph < pooled_h; ++ph) {
          for (int64_t pw = 0; pw < pooled_w; ++pw, ++i) {
            acc_t value;
            arg[i] = pool_bin(g, ph, pw, feat, c, channels, height, width, &value);
            out[i] = static_cast<scalar_t>(value);
          }
        }
      }
    });
  });
  return {output, argmax};
}

at::Tensor backward_cpu(const at::Tensor& grad_in, const at::Tensor& argmax_in, const at::Tensor& rois_in,
                        int64_t batch, int64_t channels, int64_t height, int64_t width) {
  check_backward_args(grad_in, argmax_in, rois_in, batch, channels, height, width);
  TORCH_CHECK(grad_in.device().is_cpu(), "roi_max_pool_backward (CPU): grad must be on the CPU");
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor argmax = argmax_in.contiguous();
  const auto acc_type = at::toOpMathType(grad.scalar_type());
  const at::Tensor rois = rois_in.to(acc_type).contiguous();
  // accumulate in the math type (float for half/bfloat16), cast once at the end
  at::Tensor grad_input = at::zeros({batch, channels, height, width}, grad.options().dtype(acc_type));
  if (grad.numel() > 0 && grad_input.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_max_pool_backward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t* g = grad.const_data_ptr<scalar_t>();
      const int32_t* arg = argmax.const_data_ptr<int32_t>();
      const acc_t* roi = rois.const_data_ptr<acc_t>();
      acc_t* gin = grad_input.mutable_data_ptr<acc_t>();
      const int64_t num_rois = grad.size(0);
      const int64_t per_plane = grad.size(2) * grad.size(3);
      const int64_t plane_size = height * width;
      std::vector<int> roi_batch(num_rois);
      for (int64_t r = 0; r < num_rois; ++r) roi_batch[r] = roi_batch_index(roi + 5 * r, batch);
      // race-free: one task owns whole input planes (b, c) and gathers every RoI of batch b into them
      at::parallel_for(0, batch * channels, 1, [&](int64_t begin, int64_t end) {
        for (int64_t plane = begin; plane < end; ++plane) {
          const int64_t b = plane / channels, c = plane % channels;
          acc_t* dst = gin + plane * plane_size;
          for (int64_t r = 0; r < num_rois; ++r) {
            if (roi_batch[r] != b) continue;
            const int64_t offset = (r * channels + c) * per_plane;
            for (int64_t k = 0; k < per_plane; ++k) {
              const int32_t a = arg[offset + k];
              if (routes_gradient(a, plane_size)) dst[a] += static_cast<acc_t>(g[offset + k]);
            }
          }
        }
      });
    });
  }
  return grad_input.scalar_type() == grad.scalar_type() ? grad_input : grad_input.to(grad.scalar_type());
}

}  // namespace
}  // namespace roi_pool
}  // namespace posecnn

TORCH_LIBRARY_FRAGMENT(posecnn, m) {
  m.def(
      "roi_max_pool_forward(Tensor features, Tensor rois, int pooled_h, int pooled_w, float spatial_scale) "
      "-> (Tensor output, Tensor argmax)");
  m.def(
      "roi_max_pool_backward(Tensor grad, Tensor argmax, Tensor rois, int batch, int channels, int height, "
      "int width) -> Tensor");
}

TORCH_LIBRARY_IMPL(posecnn, CPU, m) {
  m.impl("roi_max_pool_forward", &posecnn::roi_pool::forward_cpu);
  m.impl("roi_max_pool_backward", &posecnn::roi_pool::backward_cpu);
}
