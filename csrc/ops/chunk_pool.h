// psl::chunk_pool — argument validation shared by every backend.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "host_device.h"

namespace psl {

enum class PoolMode { kMean, kMax };

PoolMode check_chunk_pool_args(const at::Tensor& frames, const at::Tensor& starts, double length,
                               const std::optional<at::Tensor>& valid, c10::string_view mode);

// Refuses a NaN or infinite start, naming the first, on every device.
void check_finite_starts(const at::Tensor& starts);

// Part of frame t, which covers [t, t + 1), inside [lo, hi).
template <typename T>
PSL_HOST_DEVICE T frame_overlap(int64_t t, T lo, T hi) {
  const T a = static_cast<T>(t) > lo ? static_cast<T>(t) : lo;
  const T b = static_cast<T>(t + 1) < hi ? static_cast<T>(t + 1) : hi;
  return b > a ? b - a : T(0);
}

}  // namespace psl
