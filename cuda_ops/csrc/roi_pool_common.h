// RoI max pooling: the per-element arithmetic shared by the CPU operator (roi_pool_cpu.cpp) and the CUDA kernels
// (roi_pool_cuda.cu), so both compute bit-identical bins, maxima and argmax indices.
//
// Semantics (PoseCNN-PyTorch's kernel): a RoI row is (batch, x1, y1, x2, y2) in input-image pixels.
//   start = x1 * scale, end = x2 * scale (floats, not rounded); roi_w = int(max(end_w - start_w + 1, 1));
//   bin_w = roi_w / pooled_w; bin pw spans [floor(pw * bin_w), ceil((pw + 1) * bin_w)), each bound shifted by start_w,
//   truncated to int and clipped to [0, width]; likewise for rows. An empty bin yields 0 and argmax -1; otherwise the
//   output is the bin's maximum and argmax its index h * width + w in the feature plane (first maximum in row-major
//   order wins ties).
// Deviations, all for inputs PT leaves undefined: a RoI whose batch index is not in [0, num_batches) (or NaN) has only
// empty bins; NaN/inf coordinates never reach an int conversion (a NaN bound clips to 0); the first element of a bin
// seeds the maximum, so bins holding only -inf or NaN values are not reported empty.
// Products with the spatial scale are rounded on their own (no fused multiply-add), as IEEE arithmetic in PyTorch does.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define POSECNN_HD __host__ __device__ __forceinline__
#else
#define POSECNN_HD inline
#endif

namespace posecnn {
namespace roi_pool {

POSECNN_HD float floor_of(float x) { return floorf(x); }
POSECNN_HD double floor_of(double x) { return floor(x); }
POSECNN_HD float ceil_of(float x) { return ceilf(x); }
POSECNN_HD double ceil_of(double x) { return ceil(x); }
POSECNN_HD float trunc_of(float x) { return truncf(x); }
POSECNN_HD double trunc_of(double x) { return trunc(x); }

// a * b rounded to the type's precision before any later addition (keeps nvcc from contracting it into an FMA).
POSECNN_HD float mul_rounded(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
POSECNN_HD double mul_rounded(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// int(value) after clipping to [0, limit]; NaN clips to 0. Equals C truncation of value, then clipping.
template <typename acc_t>
POSECNN_HD int clip_to_index(acc_t value, int limit) {
  if (!(value > acc_t(0))) return 0;
  if (value >= static_cast<acc_t>(limit)) return limit;
  return static_cast<int>(value);
}

// Batch index of a RoI row (C truncation of roi[0]), or -1 when it is not in [0, num_batches).
template <typename acc_t>
POSECNN_HD int roi_batch_index(const acc_t* roi, int64_t num_batches) {
  const acc_t b = roi[0];
  if (!(b >= acc_t(0) && b < static_cast<acc_t>(num_batches))) return -1;
  return static_cast<int>(b);
}

template <typename acc_t>
struct RoiGeometry {
  int batch;      // -1: the RoI has no valid batch, every bin is empty
  acc_t start_h;  // top-left corner on the feature map (not rounded)
  acc_t start_w;
  acc_t bin_h;  // bin size in feature cells
  acc_t bin_w;
};

struct BinBounds {
  int h0, h1, w0, w1;  // rows [h0, h1), columns [w0, w1)
  POSECNN_HD bool empty() const { return h1 <= h0 || w1 <= w0; }
};

// int(max(extent + 1, 1)) in floating point: same value as PT's int conversion, defined for NaN (-> 1) and inf.
template <typename acc_t>
POSECNN_HD acc_t roi_cells(acc_t start, acc_t end) {
  const acc_t cells = end - start + acc_t(1);
  return cells > acc_t(1) ? trunc_of(cells) : acc_t(1);
}

template <typename acc_t>
POSECNN_HD RoiGeometry<acc_t> roi_geometry(const acc_t* roi, acc_t spatial_scale, int64_t num_batches,
                                           int64_t pooled_h, int64_t pooled_w) {
  RoiGeometry<acc_t> g;
  g.batch = roi_batch_index(roi, num_batches);
  g.start_w = mul_rounded(roi[1], spatial_scale);
  g.start_h = mul_rounded(roi[2], spatial_scale);
  const acc_t end_w = mul_rounded(roi[3], spatial_scale);
  const acc_t end_h = mul_rounded(roi[4], spatial_scale);
  g.bin_w = roi_cells(g.start_w, end_w) / static_cast<acc_t>(pooled_w);
  g.bin_h = roi_cells(g.start_h, end_h) / static_cast<acc_t>(pooled_h);
  return g;
}

template <typename acc_t>
POSECNN_HD BinBounds bin_bounds(const RoiGeometry<acc_t>& g, int64_t ph, int64_t pw, int64_t height,
                                int64_t width) {
  BinBounds b;
  const int h = static_cast<int>(height);
  const int w = static_cast<int>(width);
  b.h0 = clip_to_index(floor_of(mul_rounded(static_cast<acc_t>(ph), g.bin_h)) + g.start_h, h);
  b.h1 = clip_to_index(ceil_of(mul_rounded(static_cast<acc_t>(ph + 1), g.bin_h)) + g.start_h, h);
  b.w0 = clip_to_index(floor_of(mul_rounded(static_cast<acc_t>(pw), g.bin_w)) + g.start_w, w);
  b.w1 = clip_to_index(ceil_of(mul_rounded(static_cast<acc_t>(pw + 1), g.bin_w)) + g.start_w, w);
  if (g.batch < 0) b.h1 = b.h0;  // no valid batch: empty
  return b;
}

// Maximum over one bin of one feature plane; returns its index h * width + w (-1 and value 0 for an empty bin).
template <typename scalar_t, typename acc_t>
POSECNN_HD int max_in_bin(const scalar_t* plane, int64_t width, const BinBounds& b, acc_t* value) {
  if (b.empty()) {
    *value = acc_t(0);
    return -1;
  }
  const int w_stride = static_cast<int>(width);
  int arg = b.h0 * w_stride + b.w0;  // the first element seeds the maximum; later ones must be strictly greater
  acc_t best = static_cast<acc_t>(plane[arg]);
  for (int h = b.h0; h < b.h1; ++h) {
    const scalar_t* row = plane + h * w_stride;
    for (int w = b.w0; w < b.w1; ++w) {
      const acc_t v = static_cast<acc_t>(row[w]);
      if (v > best) {
        best = v;
        arg = h * w_stride + w;
      }
    }
  }
  *value = best;
  return arg;
}

// Pools bin (ph, pw) of channel c for a RoI of geometry g; returns the argmax (or -1), the maximum in *value.
// features: [B, C, H, W] contiguous.
template <typename scalar_t, typename acc_t>
POSECNN_HD int pool_bin(const RoiGeometry<acc_t>& g, int64_t ph, int64_t pw, const scalar_t* features, int64_t c,
                        int64_t channels, int64_t height, int64_t width, acc_t* value) {
  const BinBounds b = bin_bounds(g, ph, pw, height, width);
  const int64_t batch = g.batch < 0 ? 0 : g.batch;  // an invalid batch has only empty bins: the plane is not read
  return max_in_bin(features + (batch * channels + c) * height * width, width, b, value);
}

// One output element out[r, c, ph, pw] (flat index `index` in an [R, C, PH, PW] tensor); rois: [R, 5] in acc_t.
template <typename scalar_t, typename acc_t>
POSECNN_HD void forward_element(int64_t index, const scalar_t* features, const acc_t* rois, acc_t spatial_scale,
                                int64_t num_batches, int64_t channels, int64_t height, int64_t width,
                                int64_t pooled_h, int64_t pooled_w, scalar_t* output, int32_t* argmax) {
  const int64_t pw = index % pooled_w;
  const int64_t ph = (index / pooled_w) % pooled_h;
  const int64_t c = (index / (pooled_w * pooled_h)) % channels;
  const int64_t r = index / (pooled_w * pooled_h * channels);
  const RoiGeometry<acc_t> g = roi_geometry(rois + r * 5, spatial_scale, num_batches, pooled_h, pooled_w);
  acc_t value;
  argmax[index] = pool_bin(g, ph, pw, features, c, channels, height, width, &value);
  output[index] = static_cast<scalar_t>(value);
}

// Whether a stored argmax addresses an element of an H*W plane (-1 marks an empty bin: no gradient).
POSECNN_HD bool routes_gradient(int32_t arg, int64_t plane_size) { return arg >= 0 && arg < plane_size; }

}  // namespace roi_pool
}  // namespace posecnn
