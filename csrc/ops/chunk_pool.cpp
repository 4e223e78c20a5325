#include "chunk_pool.h"

#include <cmath>

namespace psl {

PoolMode check_chunk_pool_args(const at::Tensor& frames, const at::Tensor& starts, double length,
                               const std::optional<at::Tensor>& valid, c10::string_view mode) {
  TORCH_CHECK(frames.dim() == 3, "chunk_pool: frames must be [batch, frames, classes], got shape ",
              frames.sizes());
  const auto dt = frames.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16,
              "chunk_pool: frames must be float32, float16 or bfloat16, got ", dt);
  TORCH_CHECK(starts.dim() == 2 && starts.size(0) == frames.size(0),
              "chunk_pool: starts must be [batch=", frames.size(0), ", chunks], got shape ",
              starts.sizes());
  TORCH_CHECK(starts.scalar_type() == at::kFloat || starts.scalar_type() == at::kDouble,
              "chunk_pool: starts must be float32 or float64 (frame units), got ",
              starts.scalar_type());
  TORCH_CHECK(starts.device() == frames.device(), "chunk_pool: starts is on ", starts.device(),
              " but frames is on ", frames.device());
  TORCH_CHECK(std::isfinite(length) && length > 0.0,
              "chunk_pool: length must be a positive number of frames, got ", length);
  if (valid.has_value()) {
    const auto& v = *valid;
    TORCH_CHECK(v.dim() == 1 && v.size(0) == frames.size(0), "chunk_pool: valid must be [batch=",
                frames.size(0), "], got shape ", v.sizes());
    TORCH_CHECK(v.scalar_type() == at::kLong, "chunk_pool: valid must be int64, got ",
                v.scalar_type());
    TORCH_CHECK(v.device() == frames.device(), "chunk_pool: valid is on ", v.device(),
                " but frames is on ", frames.device());
  }
  if (mode == "mean") return PoolMode::kMean;
  TORCH_CHECK(mode == "max", "chunk_pool: mode must be 'mean' or 'max', got '", std::string(mode),
              "'");
  return PoolMode::kMax;
}

void check_finite_starts(const at::Tensor& starts) {
  // On a GPU: one reduction and one synchronisation; only a failing call copies the
  // starts to the host to name the first bad one.
  if (!starts.is_cpu() && at::isfinite(starts).all().item<bool>()) return;
  const auto s = starts.to(at::kCPU, at::kDouble).contiguous();
  const double* p = s.data_ptr<double>();
  for (int64_t i = 0; i < s.numel(); ++i) {
    TORCH_CHECK(std::isfinite(p[i]), "chunk_pool: starts[", i / s.size(1), ", ", i % s.size(1),
                "] is ", p[i]);
  }
}

}  // namespace psl
