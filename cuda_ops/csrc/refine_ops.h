// Argument checks shared by the CPU and CUDA depth-refinement operators (ATen side).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "refine_common.h"

namespace posecnn {
namespace refine {

// points float32 [B, N, 3], valid bool [B, N], K float32 [3, 3], one device.
inline void check_visibility_args(const at::Tensor& points, const at::Tensor& valid, const at::Tensor& K,
                                  at::DeviceType device) {
  TORCH_CHECK(points.device().type() == device && valid.device() == points.device() && K.device() == points.device(),
              "model_visibility: points, valid and K must be on one ", device, " device");
  TORCH_CHECK(points.dim() == 3 && points.size(2) == 3 && points.scalar_type() == at::kFloat,
              "model_visibility: points must be float32 [B, N, 3], got ", points.scalar_type(), " ", points.sizes());
  TORCH_CHECK(valid.dim() == 2 && valid.scalar_type() == at::kBool && valid.size(0) == points.size(0) &&
                  valid.size(1) == points.size(1),
              "model_visibility: valid must be bool [B, N] matching points, got ", valid.scalar_type(), " ",
              valid.sizes());
  TORCH_CHECK(K.dim() == 2 && K.size(0) == 3 && K.size(1) == 3 && K.scalar_type() == at::kFloat,
              "model_visibility: K must be float32 [3, 3], got ", K.scalar_type(), " ", K.sizes());
}

// q float32 [B, M, 3], s float32 [B, N, 3], s_ok bool [B, N], R float32 [B, 3, 3], t float32 [B, 3],
// meta float64 [B, 8], table int64 [T, C], one device.
inline void check_nearest_args(const at::Tensor& q, const at::Tensor& s, const at::Tensor& s_ok, const at::Tensor& R,
                               const at::Tensor& t, const at::Tensor& meta, const at::Tensor& table,
                               at::DeviceType device) {
  for (const at::Tensor* x : {&s, &s_ok, &R, &t, &meta, &table}) {
    TORCH_CHECK(x->device() == q.device(), "model_grid_nearest: all tensors must be on one device");
  }
  TORCH_CHECK(q.device().type() == device, "model_grid_nearest: tensors must be on a ", device, " device");
  const int64_t B = q.size(0);
  TORCH_CHECK(q.dim() == 3 && q.size(2) == 3 && q.scalar_type() == at::kFloat,
              "model_grid_nearest: q must be float32 [B, M, 3], got ", q.scalar_type(), " ", q.sizes());
  TORCH_CHECK(s.dim() == 3 && s.size(0) == B && s.size(2) == 3 && s.scalar_type() == at::kFloat,
              "model_grid_nearest: s must be float32 [B, N, 3], got ", s.scalar_type(), " ", s.sizes());
  TORCH_CHECK(s_ok.dim() == 2 && s_ok.size(0) == B && s_ok.size(1) == s.size(1) && s_ok.scalar_type() == at::kBool,
              "model_grid_nearest: s_ok must be bool [B, N], got ", s_ok.scalar_type(), " ", s_ok.sizes());
  TORCH_CHECK(R.dim() == 3 && R.size(0) == B && R.size(1) == 3 && R.size(2) == 3 && R.scalar_type() == at::kFloat,
              "model_grid_nearest: R must be float32 [B, 3, 3], got ", R.scalar_type(), " ", R.sizes());
  TORCH_CHECK(t.dim() == 2 && t.size(0) == B && t.size(1) == 3 && t.scalar_type() == at::kFloat,
              "model_grid_nearest: t must be float32 [B, 3], got ", t.scalar_type(), " ", t.sizes());
  TORCH_CHECK(meta.dim() == 2 && meta.size(0) == B && meta.size(1) == 8 && meta.scalar_type() == at::kDouble,
              "model_grid_nearest: meta must be float64 [B, 8], got ", meta.scalar_type(), " ", meta.sizes());
  TORCH_CHECK(table.dim() == 2 && table.size(1) >= 1 && table.scalar_type() == at::kLong,
              "model_grid_nearest: table must be int64 [T, C >= 1], got ", table.scalar_type(), " ", table.sizes());
}

// q, m, normals float32 [B, M, 3], normal_ok bool [B, M], w float32 [B, M], c float32 [B, 3], point_weight
// float32 [B], one device.
inline void check_normal_equation_args(const at::Tensor& q, const at::Tensor& m, const at::Tensor& normals,
                                       const at::Tensor& normal_ok, const at::Tensor& w, const at::Tensor& c,
                                       const at::Tensor& point_weight, at::DeviceType device) {
  TORCH_CHECK(q.device().type() == device, "icp_normal_equations: tensors must be on a ", device, " device");
  for (const at::Tensor* x : {&m, &normals, &normal_ok, &w, &c, &point_weight}) {
    TORCH_CHECK(x->device() == q.device(), "icp_normal_equations: all tensors must be on one device");
  }
  TORCH_CHECK(q.dim() == 3 && q.size(2) == 3 && q.scalar_type() == at::kFloat,
              "icp_normal_equations: q must be float32 [B, M, 3], got ", q.scalar_type(), " ", q.sizes());
  const int64_t B = q.size(0), M = q.size(1);
  for (const at::Tensor* x : {&m, &normals}) {
    TORCH_CHECK(x->sizes() == q.sizes() && x->scalar_type() == at::kFloat,
                "icp_normal_equations: m and normals must be float32 like q ", q.sizes(), ", got ", x->scalar_type(),
                " ", x->sizes());
  }
  TORCH_CHECK(normal_ok.dim() == 2 && normal_ok.size(0) == B && normal_ok.size(1) == M &&
                  normal_ok.scalar_type() == at::kBool,
              "icp_normal_equations: normal_ok must be bool [B, M], got ", normal_ok.scalar_type(), " ",
              normal_ok.sizes());
  TORCH_CHECK(w.dim() == 2 && w.size(0) == B && w.size(1) == M && w.scalar_type() == at::kFloat,
              "icp_normal_equations: w must be float32 [B, M], got ", w.scalar_type(), " ", w.sizes());
  TORCH_CHECK(c.dim() == 2 && c.size(0) == B && c.size(1) == 3 && c.scalar_type() == at::kFloat,
              "icp_normal_equations: c must be float32 [B, 3], got ", c.scalar_type(), " ", c.sizes());
  TORCH_CHECK(point_weight.dim() == 1 && point_weight.size(0) == B && point_weight.scalar_type() == at::kFloat,
              "icp_normal_equations: point_weight must be float32 [B], got ", point_weight.scalar_type(), " ",
              point_weight.sizes());
}

// Every meta row [B, 8] (host memory) must describe cells inside the table of T rows: a row outside it would be
// read out of bounds.
inline void check_grid_meta(const double* meta, int64_t B, int64_t T) {
  for (int64_t b = 0; b < B; ++b) {
    const Grid g = grid_of(meta + 8 * b);
    TORCH_CHECK(g.dims[0] >= 1 && g.dims[1] >= 1 && g.dims[2] >= 1 && g.offset >= 0 &&
                    g.offset + g.dims[0] * g.dims[1] * g.dims[2] <= T,
                "model_grid_nearest: meta row ", b, " describes cells outside the table of ", T, " rows");
  }
}

}  // namespace refine
}  // namespace posecnn
