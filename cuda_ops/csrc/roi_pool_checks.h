// Host-side argument checks for the RoI max pooling operators (shared by the CPU and CUDA implementations).
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <cstdint>
#include <limits>

namespace posecnn {
namespace roi_pool {

// Validates forward arguments; returns the RoIs as a contiguous [R, 5] tensor in the features' math type
// (float for half/bfloat16/float, double for double).
inline at::Tensor check_forward_args(const at::Tensor& features, const at::Tensor& rois, int64_t pooled_h,
                                     int64_t pooled_w, double spatial_scale) {
  TORCH_CHECK(features.dim() == 4, "roi_max_pool: features must be [B, C, H, W], got ", features.sizes());
  TORCH_CHECK(at::isFloatingType(features.scalar_type()), "roi_max_pool: features must be floating point, got ",
              features.scalar_type());
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, "roi_max_pool: rois must be [R, 5], got ", rois.sizes());
  TORCH_CHECK(at::isFloatingType(rois.scalar_type()), "roi_max_pool: rois must be floating point, got ",
              rois.scalar_type());
  TORCH_CHECK(features.device() == rois.device(), "roi_max_pool: features (", features.device(), ") and rois (",
              rois.device(), ") must be on the same device");
  TORCH_CHECK(pooled_h > 0 && pooled_w > 0, "roi_max_pool: pooled size must be positive, got ", pooled_h, "x",
              pooled_w);
  TORCH_CHECK(spatial_scale > 0.0, "roi_max_pool: spatial_scale must be positive, got ", spatial_scale);
  TORCH_CHECK(features.size(2) * features.size(3) <= std::numeric_limits<int32_t>::max(),
              "roi_max_pool: a feature plane must hold fewer than 2^31 elements");
  const auto acc = at::toOpMathType(features.scalar_type());
  return rois.to(acc).contiguous();
}

inline void check_backward_args(const at::Tensor& grad, const at::Tensor& argmax, const at::Tensor& rois,
                                int64_t batch, int64_t channels, int64_t height, int64_t width) {
  TORCH_CHECK(grad.dim() == 4, "roi_max_pool_backward: grad must be [R, C, PH, PW], got ", grad.sizes());
  TORCH_CHECK(at::isFloatingType(grad.scalar_type()), "roi_max_pool_backward: grad must be floating point");
  TORCH_CHECK(argmax.sizes() == grad.sizes(), "roi_max_pool_backward: argmax ", argmax.sizes(),
              " must have grad's shape ", grad.sizes());
  TORCH_CHECK(argmax.scalar_type() == at::kInt, "roi_max_pool_backward: argmax must be int32");
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5 && rois.size(0) == grad.size(0),
              "roi_max_pool_backward: rois must be [R, 5] with R = grad.size(0), got ", rois.sizes());
  TORCH_CHECK(grad.size(1) == channels, "roi_max_pool_backward: grad has ", grad.size(1), " channels, expected ",
              channels);
  TORCH_CHECK(grad.device() == argmax.device() && grad.device() == rois.device(),
              "roi_max_pool_backward: grad, argmax and rois must be on one device");
  TORCH_CHECK(batch >= 0 && channels >= 0 && height >= 0 && width >= 0,
              "roi_max_pool_backward: input sizes must be non-negative");
}

}  // namespace roi_pool
}  // namespace posecnn
