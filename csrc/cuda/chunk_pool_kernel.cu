// CUDA kernel of psl::chunk_pool: pools frame-level probabilities [B, T, C]
// over chunks [start, start + length) given in (fractional) frame units.
//
// A group of `per_chunk` threads (a multiple of 32) handles one (clip, chunk)
// pair, its threads spread over the contiguous class axis so every frame row is
// read coalesced; a block of kThreads threads holds kThreads / per_chunk such
// groups, so small C still fills the block. Only the frames that overlap the
// chunk are read. The arithmetic mirrors the CPU kernel: overlaps and their sum
// in double, weighted sums in float.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <climits>

#include "ops/chunk_pool.h"

namespace psl {
namespace {

constexpr int kThreads = 256;

struct ChunkPoolArgs {
  const void* starts;     // [B, K] float32 or float64
  bool starts_double;
  const int64_t* valid;   // [B] or null (every clip has T valid frames)
  float* out;             // [B, K, C]
  double length;
  int64_t n_chunks, K, T, C;
  int per_chunk;          // threads per chunk
};

template <typename scalar_t, bool kMax>
__global__ void __launch_bounds__(kThreads)
    chunk_pool_kernel(const scalar_t* __restrict__ frames, const ChunkPoolArgs a) {
  const int64_t i = blockIdx.x * int64_t{kThreads / a.per_chunk} + threadIdx.x / a.per_chunk;
  if (i >= a.n_chunks) return;
  const int64_t b = i / a.K;
  const double s = a.starts_double ? static_cast<const double*>(a.starts)[i]
                                   : static_cast<const float*>(a.starts)[i];
  int64_t v = a.valid != nullptr ? a.valid[b] : a.T;
  v = v < 0 ? 0 : (v > a.T ? a.T : v);
  // The chunk clipped to [0, v) (non-finite starts were refused before the launch).
  const double end = s + a.length;
  const double lo = s < 0.0 ? 0.0 : s;
  const double hi = static_cast<double>(v) < end ? static_cast<double>(v) : end;
  const bool empty = !(hi > lo);
  const int64_t first = empty ? 0 : static_cast<int64_t>(floor(lo));
  const int64_t last = empty ? 0 : static_cast<int64_t>(ceil(hi));
  const scalar_t* f = frames + b * a.T * a.C;
  float* o = a.out + i * a.C;

  for (int64_t c = threadIdx.x % a.per_chunk; c < a.C; c += a.per_chunk) {
    float r = 0.0f;  // an empty chunk gives zeros
    if (!empty) {
      if constexpr (kMax) {
        r = -INFINITY;
        for (int64_t t = first; t < last; ++t) {
          if (frame_overlap(t, lo, hi) > 0.0) r = fmaxf(r, static_cast<float>(f[t * a.C + c]));
        }
      } else {
        float acc = 0.0f;
        double total = 0.0;
        for (int64_t t = first; t < last; ++t) {
          const double w = frame_overlap(t, lo, hi);
          total += w;
          acc += static_cast<float>(w) * static_cast<float>(f[t * a.C + c]);
        }
        r = acc * static_cast<float>(1.0 / total);
      }
    }
    o[c] = r;
  }
}

template <typename scalar_t>
void launch_chunk_pool(const at::Tensor& frames, PoolMode mode, const ChunkPoolArgs& args,
                       int blocks, cudaStream_t stream) {
  const scalar_t* f = frames.data_ptr<scalar_t>();
  if (mode == PoolMode::kMax) {
    chunk_pool_kernel<scalar_t, true><<<blocks, kThreads, 0, stream>>>(f, args);
  } else {
    chunk_pool_kernel<scalar_t, false><<<blocks, kThreads, 0, stream>>>(f, args);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

at::Tensor chunk_pool_cuda(const at::Tensor& frames, const at::Tensor& starts, double length,
                           const std::optional<at::Tensor>& valid, c10::string_view mode) {
  const PoolMode pool_mode = check_chunk_pool_args(frames, starts, length, valid, mode);
  c10::cuda::CUDAGuard guard(frames.device());
  const auto f = frames.contiguous();
  const auto s = starts.contiguous();
  check_finite_starts(s);
  at::Tensor v;
  if (valid.has_value()) v = valid->contiguous();
  const int64_t B = f.size(0), T = f.size(1), C = f.size(2), K = s.size(1);
  auto out = at::empty({B, K, C}, f.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;

  const int per_chunk = static_cast<int>(std::min<int64_t>(kThreads, (C + 31) / 32 * 32));
  const int64_t per_block = kThreads / per_chunk;
  const int64_t blocks = (B * K + per_block - 1) / per_block;
  TORCH_CHECK(blocks <= INT_MAX, "chunk_pool: too many chunks for one CUDA launch (", B * K, ")");
  const ChunkPoolArgs args{s.data_ptr(),
                           s.scalar_type() == at::kDouble,
                           v.defined() ? v.data_ptr<int64_t>() : nullptr,
                           out.data_ptr<float>(),
                           length,
                           B * K,
                           K,
                           T,
                           C,
                           per_chunk};
  const auto stream = c10::cuda::getCurrentCUDAStream();
  switch (f.scalar_type()) {
    case at::kFloat: launch_chunk_pool<float>(f, pool_mode, args, blocks, stream); break;
    case at::kHalf: launch_chunk_pool<at::Half>(f, pool_mode, args, blocks, stream); break;
    default: launch_chunk_pool<at::BFloat16>(f, pool_mode, args, blocks, stream); break;
  }
  return out;
}

TORCH_LIBRARY_IMPL(psl, CUDA, m) { m.impl("chunk_pool", &chunk_pool_cuda); }

}  // namespace psl
