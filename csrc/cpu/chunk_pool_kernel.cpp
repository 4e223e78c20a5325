// CPU kernel of psl::chunk_pool: pools frame-level probabilities [B, T, C]
// over chunks [start, start + length) given in (fractional) frame units.
// Each (clip, chunk) pair is independent; the class axis is contiguous, so the
// inner loop over classes vectorises, and only the frames that overlap the
// chunk are read.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/chunk_pool.h"

namespace psl {
namespace {

void pool_chunk(const float* frames, int64_t C, double lo, double hi, PoolMode mode, float* out) {
  if (!(hi > lo)) {
    std::fill(out, out + C, 0.0f);
    return;
  }
  const auto first = static_cast<int64_t>(std::floor(lo));
  const auto last = static_cast<int64_t>(std::ceil(hi));
  if (mode == PoolMode::kMax) {
    std::fill(out, out + C, -std::numeric_limits<float>::infinity());
    for (int64_t t = first; t < last; ++t) {
      if (frame_overlap(t, lo, hi) <= 0.0) continue;
      const float* f = frames + t * C;
      for (int64_t c = 0; c < C; ++c) out[c] = std::max(out[c], f[c]);
    }
    return;
  }
  std::fill(out, out + C, 0.0f);
  double total = 0.0;
  for (int64_t t = first; t < last; ++t) {
    const double w = frame_overlap(t, lo, hi);
    total += w;
    const float wf = static_cast<float>(w);
    const float* f = frames + t * C;
    for (int64_t c = 0; c < C; ++c) out[c] += wf * f[c];
  }
  const float inv = static_cast<float>(1.0 / total);
  for (int64_t c = 0; c < C; ++c) out[c] *= inv;
}

void chunk_pool_loop(const at::Tensor& frames, const at::Tensor& starts, double length,
                     const int64_t* valid, PoolMode mode, at::Tensor& out) {
  const int64_t B = frames.size(0), T = frames.size(1), C = frames.size(2), K = starts.size(1);
  const float* f = frames.data_ptr<float>();
  const double* s = starts.data_ptr<double>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, B * K, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / K;
      const double valid_end = static_cast<double>(std::clamp<int64_t>(valid ? valid[b] : T, 0, T));
      const double lo = std::max(s[i], 0.0);
      const double hi = std::min(s[i] + length, valid_end);
      pool_chunk(f + b * T * C, C, lo, hi, mode, o + i * C);
    }
  });
}

at::Tensor chunk_pool_cpu(const at::Tensor& frames, const at::Tensor& starts, double length,
                          const std::optional<at::Tensor>& valid, c10::string_view mode) {
  const PoolMode pool_mode = check_chunk_pool_args(frames, starts, length, valid, mode);
  // Half-precision frames are widened once, with ATen's vectorised conversion: much
  // cheaper than converting element by element inside the pooling loop.
  const auto f = frames.to(at::kFloat).contiguous();
  const auto s = starts.to(at::kDouble).contiguous();
  check_finite_starts(s);
  at::Tensor v;
  if (valid.has_value()) v = valid->contiguous();
  const int64_t* vp = v.defined() ? v.data_ptr<int64_t>() : nullptr;
  auto out = at::empty({f.size(0), s.size(1), f.size(2)}, f.options().dtype(at::kFloat));
  chunk_pool_loop(f, s, length, vp, pool_mode, out);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(psl, CPU, m) { m.impl("chunk_pool", &chunk_pool_cpu); }

}  // namespace psl
