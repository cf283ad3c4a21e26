// Argument checks and parameters shared by the CPU and CUDA Hough voting operators (ATen side).
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <optional>

#include "hough_voting_common.h"

namespace posecnn {
namespace hv {

struct Params {
  int64_t label_threshold;
  int64_t skip_pixels;
  float inlier_threshold;  // PT keeps it in float32
  bool multi;              // vote_threshold given (else: one peak per class, the first maximum)
  int64_t vote_threshold;
  float per_threshold;
  int64_t window;
  int64_t max_peaks;
  bool break_ties;         // test mode: equal votes, the larger linear index wins
  bool check_same_label;
  int64_t same_label_samples;
  double same_label_fraction;
  float box_factor;
  int64_t same_label_needed;  // smallest passing count of same-label samples (hough_voting_common.h)
};

inline Params make_params(int64_t label_threshold, int64_t skip_pixels, double inlier_threshold,
                          std::optional<int64_t> vote_threshold, double per_threshold, int64_t window,
                          int64_t max_peaks, bool break_ties, bool check_same_label, int64_t same_label_samples,
                          double same_label_fraction, double box_factor) {
  TORCH_CHECK(label_threshold >= 0, "hough_voting: label_threshold must be >= 0");
  TORCH_CHECK(skip_pixels >= 1, "hough_voting: skip_pixels must be >= 1");
  TORCH_CHECK(inlier_threshold >= 0.0 && inlier_threshold < 1.0, "hough_voting: inlier_threshold must be in [0, 1)");
  TORCH_CHECK(!vote_threshold.has_value() || *vote_threshold >= 0, "hough_voting: vote_threshold must be >= 0");
  TORCH_CHECK(per_threshold >= 0.0 && std::isfinite(per_threshold), "hough_voting: per_threshold must be >= 0");
  TORCH_CHECK(window >= 1 && window % 2 == 1, "hough_voting: window must be odd and >= 1");
  TORCH_CHECK(max_peaks >= 1, "hough_voting: max_peaks must be >= 1");
  TORCH_CHECK(same_label_samples >= 1, "hough_voting: same_label_samples must be >= 1");
  TORCH_CHECK(same_label_fraction >= 0.0 && same_label_fraction <= 1.0,
              "hough_voting: same_label_fraction must be in [0, 1]");
  TORCH_CHECK(box_factor >= 0.0 && std::isfinite(box_factor), "hough_voting: box_factor must be >= 0");
  return Params{label_threshold, skip_pixels, static_cast<float>(inlier_threshold), vote_threshold.has_value(),
                vote_threshold.value_or(0), static_cast<float>(per_threshold), window, max_peaks, break_ties,
                check_same_label, same_label_samples, same_label_fraction, static_cast<float>(box_factor),
                same_label_needed(same_label_samples, same_label_fraction)};
}

// labels int64 [B,H,W], vertex float32 [B,3C,H,W], intrinsics float32 [B,3,3], extents float32 [C,3], one device.
inline void check_inputs(const at::Tensor& labels, const at::Tensor& vertex, const at::Tensor& intrinsics,
                         const at::Tensor& extents, at::DeviceType device) {
  TORCH_CHECK(labels.device().type() == device && vertex.device() == labels.device() &&
                  intrinsics.device() == labels.device() && extents.device() == labels.device(),
              "hough_voting: labels, vertex, intrinsics and extents must be on one ", device, " device");
  TORCH_CHECK(labels.dim() == 3 && labels.scalar_type() == at::kLong, "hough_voting: labels must be int64 [B,H,W]");
  TORCH_CHECK(extents.dim() == 2 && extents.size(1) == 3 && extents.scalar_type() == at::kFloat,
              "hough_voting: extents must be float32 [C,3]");
  const int64_t B = labels.size(0), H = labels.size(1), W = labels.size(2), C = extents.size(0);
  TORCH_CHECK(vertex.dim() == 4 && vertex.scalar_type() == at::kFloat && vertex.size(0) == B &&
                  vertex.size(1) == 3 * C && vertex.size(2) == H && vertex.size(3) == W,
              "hough_voting: vertex must be float32 [B,3C,H,W] matching labels [B,H,W] and extents [C,3]");
  TORCH_CHECK(intrinsics.dim() == 3 && intrinsics.size(0) == B && intrinsics.size(1) == 3 &&
                  intrinsics.size(2) == 3 && intrinsics.scalar_type() == at::kFloat,
              "hough_voting: intrinsics must be float32 [B,3,3]");
  TORCH_CHECK(C >= 1, "hough_voting: extents must have at least one row");
}

}  // namespace hv
}  // namespace posecnn
