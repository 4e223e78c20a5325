// CUDA kernel of psl::log_mel: framing, window, real FFT, power, sparse mel
// filterbank and log in one pass over the wave, with no spectrogram in memory.
//
// A block of kThreads threads handles F consecutive frames of one clip. A frame
// is an n_fft-point real FFT done as the M = n_fft / 2 point complex FFT Z of
// its packed windowed samples z[j] = x[2j] + i x[2j+1], by P = M / E threads
// that each hold E = min(16, M) complex values in registers (F = kThreads / P).
// The complex FFT is a Stockham autosort FFT: radix-16 passes (the last one of
// radix 2, 4 or 8 when log2(M) is not a multiple of 4) computed in registers,
// with one shared-memory exchange per pass. The first pass reads the
// reflect-padded samples straight from global memory. The real spectrum is then
// untangled from Z, squared into shared memory, and the mel sums, log and
// stores follow with consecutive threads on consecutive frames of a mel row.
// The tables (window, twiddles, mel weights) are computed per call, in double
// precision, by a small kernel on the same stream.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <climits>
#include <type_traits>

#include "ops/log_mel.h"
#include "ops/mel_scale.h"
#include "ops/window.h"

namespace psl {
namespace {

constexpr int kThreads = 256;
constexpr int kMinLog2M = 2;   // n_fft = 8, the smallest check_log_mel_args accepts
constexpr int kMaxLog2M = 12;  // n_fft = 8192
constexpr float kDbPerLog2 = 3.0102999566398120f;  // 10 * log10(2)

// ---- Shape of the complex FFT of M = 2^log2m points -------------------------

// Complex values held by one thread.
__host__ __device__ constexpr int elems_per_thread(int log2m) { return log2m < 4 ? 1 << log2m : 16; }
__host__ __device__ constexpr int fft_pass_count(int log2m) { return (log2m + 3) / 4; }
// log2 of the radix of pass p: 4, except for the last pass of a log2m that is
// not a multiple of 4.
__host__ __device__ constexpr int pass_log2r(int log2m, int p) {
  return log2m - 4 * p < 4 ? log2m - 4 * p : 4;
}
// Pass p > 0 multiplies its inputs by (R - 1) * Ns twiddles (Ns = 16^p, the
// size of the sub-transforms done so far); they are stored pass after pass.
__host__ __device__ constexpr int pass_twiddles(int log2m, int p) {
  return p == 0 ? 0 : ((1 << pass_log2r(log2m, p)) - 1) << (4 * p);
}
__host__ __device__ constexpr int twiddle_offset(int log2m, int p) {
  int n = 0;
  for (int q = 0; q < p; ++q) n += pass_twiddles(log2m, q);
  return n;
}
// One float2 of padding every 16 keeps the strided writes of the first pass
// free of bank conflicts; the extra float2 per frame staggers the frames' power
// rows across banks for the mel sums.
__host__ __device__ constexpr int padded(int i) { return i + (i >> 4); }
__host__ __device__ constexpr int frame_stride(int log2m) { return padded(1 << log2m) + 1; }
__host__ __device__ constexpr int frames_per_block(int log2m) {
  return kThreads / ((1 << log2m) / elems_per_thread(log2m));
}

// Reverses the low `bits` <= 4 bits of i (loop-free, so it always folds).
__device__ __forceinline__ constexpr int bit_reverse(int i, int bits) {
  return (((i & 1) << 3) | ((i & 2) << 1) | ((i & 4) >> 1) | ((i & 8) >> 3)) >> (4 - bits);
}

// ---- Complex arithmetic -----------------------------------------------------

__device__ __forceinline__ float2 cadd(float2 a, float2 b) { return make_float2(a.x + b.x, a.y + b.y); }
__device__ __forceinline__ float2 csub(float2 a, float2 b) { return make_float2(a.x - b.x, a.y - b.y); }
__device__ __forceinline__ float2 cmul(float2 a, float2 b) {
  return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}
__device__ __forceinline__ float cnorm(float2 a) { return a.x * a.x + a.y * a.y; }

// d * exp(-2 pi i e / 16) for 0 <= e < 8. e is a constant once the DFT loops
// are unrolled, so the switch folds away and trivial factors cost nothing.
__device__ __forceinline__ float2 rotate16(float2 d, int e) {
  constexpr float c1 = 0.92387953251128674f, s1 = 0.38268343236508977f, h = 0.70710678118654752f;
  float c, s;
  switch (e) {
    case 0: return d;
    case 2: return make_float2(h * (d.x + d.y), h * (d.y - d.x));
    case 4: return make_float2(d.y, -d.x);
    case 6: return make_float2(h * (d.y - d.x), -h * (d.x + d.y));
    case 1: c = c1; s = s1; break;
    case 3: c = s1; s = c1; break;
    case 5: c = -s1; s = c1; break;
    default: c = -c1; s = s1; break;
  }
  return make_float2(d.x * c + d.y * s, d.y * c - d.x * s);
}

// In-register DFT of the 2^LOG2R values v[base..]: radix-2 decimation in
// frequency, so the result is in bit-reversed order.
template <int LOG2R, int E>
__device__ __forceinline__ void dft(float2 (&v)[E], int base) {
  constexpr int R = 1 << LOG2R;
#pragma unroll
  for (int s = 0; s < LOG2R; ++s) {
    const int half = R >> (s + 1);
#pragma unroll
    for (int i = 0; i < R; ++i) {
      if (i & half) continue;
      const float2 x = v[base + i], y = v[base + i + half];
      v[base + i] = cadd(x, y);
      v[base + i + half] = rotate16(csub(x, y), (i & (half - 1)) * (8 / half));
    }
  }
}

// Barrier of the P threads of one frame: they share a warp when P <= 32.
template <int P>
__device__ __forceinline__ void frame_sync() {
  if constexpr (P <= 32) {
    __syncwarp();
  } else {
    __syncthreads();
  }
}

// ---- The kernel ------------------------------------------------------------

struct LogMelArgs {
  const int64_t* lengths;  // [B] on the device, or null: every clip is n_samples long
  const float* window;     // [n_fft] padded periodic Hann window
  const float2* fft_tw;    // Stockham twiddles, see pass_twiddles
  const float2* rfft_tw;   // [M / 2 + 1]: exp(-2 pi i k / n_fft)
  const float* mel_w;      // [2 * n_freqs]: weight of bin k in filter m at 2k + (m & 1)
  const int2* mel_support; // [n_mels]: bins [first, last) of filter m
  int* bad_clip;           // smallest clip index with a non-finite sample
  void* out;               // [B, n_mels, n_frames]
  at::ScalarType out_dtype;
  int n_samples, n_frames, hop, pad, n_mels, tiles;
};

// Sample i in [-pad, len + pad) of a clip reflect-padded at its own length
// (pad < len).
__device__ __forceinline__ int reflect(int i, int len) {
  i = abs(i);
  return min(i, 2 * (len - 1) - i);
}

// Loads the windowed packed samples of one frame (first sample `start` of the
// clip) in the layout of the first FFT pass: job j = lane + q * P reads
// z[j + r * M / R]. kReflect is false for a frame inside the clip, where the
// offsets from x + start are constants. Returns false if a sample is NaN or
// infinite (int16 samples are scaled by 1 / 32768 through the window).
template <int LOG2M, bool kReflect, typename In>
__device__ __forceinline__ bool load_samples(float2 (&v)[elems_per_thread(LOG2M)],
                                             const In* __restrict__ x, int start, int len,
                                             const float* __restrict__ window, int lane) {
  constexpr int M = 1 << LOG2M, E = elems_per_thread(LOG2M), P = M / E;
  constexpr int R = 1 << pass_log2r(LOG2M, 0);
  float probe = 0.0f;  // stays 0 unless a sample is NaN or infinite (x * 0 is NaN then)
#pragma unroll
  for (int q = 0; q < E / R; ++q) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int n = lane + q * P + r * (M / R);
      const float2 w = __ldg(reinterpret_cast<const float2*>(window) + n);
      const int i = start + 2 * n;
      const float a = static_cast<float>(x[kReflect ? reflect(i, len) : i]);
      const float b = static_cast<float>(x[kReflect ? reflect(i + 1, len) : i + 1]);
      if constexpr (!std::is_same_v<In, int16_t>) probe += a * 0.0f + b * 0.0f;
      v[q * R + r] = make_float2(a * w.x, b * w.y);
    }
  }
  return probe == 0.0f;
}

template <int LOG2M, typename In>
__device__ __forceinline__ bool load_frame(float2 (&v)[elems_per_thread(LOG2M)],
                                           const In* __restrict__ x, int start, int len,
                                           const float* __restrict__ window, int lane) {
  if (start >= 0 && start + (2 << LOG2M) <= len) {
    return load_samples<LOG2M, false>(v, x, start, len, window, lane);
  }
  return load_samples<LOG2M, true>(v, x, start, len, window, lane);
}

// Stockham pass PASS, then the following passes. Job j of a radix-R pass takes
// the elements j + r * M / R, multiplies them by exp(-2 pi i r (j % Ns) / (Ns R)),
// transforms them and stores the result r at (j / Ns) * Ns * R + j % Ns + r * Ns.
// Pass 0 finds its inputs in v (from load_frame), the others in buf. On return
// buf holds Z in natural order (at padded indices).
template <int LOG2M, int PASS>
__device__ __forceinline__ void fft_passes(float2 (&v)[elems_per_thread(LOG2M)], float2* buf,
                                           const float2* __restrict__ fft_tw, int lane) {
  constexpr int M = 1 << LOG2M, E = elems_per_thread(LOG2M), P = M / E;
  constexpr int LOG2R = pass_log2r(LOG2M, PASS), R = 1 << LOG2R, NS = 1 << (4 * PASS);
  if constexpr (PASS > 0) {
    const float2* tw = fft_tw + twiddle_offset(LOG2M, PASS);
#pragma unroll
    for (int q = 0; q < E / R; ++q) {
      const int j = lane + q * P;
#pragma unroll
      for (int r = 0; r < R; ++r) v[q * R + r] = buf[padded(j + r * (M / R))];
#pragma unroll
      for (int r = 1; r < R; ++r) {
        v[q * R + r] = cmul(v[q * R + r], __ldg(tw + (r - 1) * NS + j % NS));
      }
    }
  }
#pragma unroll
  for (int q = 0; q < E / R; ++q) dft<LOG2R>(v, q * R);
  // The pass works in place: its reads must precede its writes, except in the
  // last pass, where every thread writes back exactly the elements it read.
  if constexpr (PASS > 0 && PASS + 1 < fft_pass_count(LOG2M)) frame_sync<P>();
#pragma unroll
  for (int q = 0; q < E / R; ++q) {
    const int j = lane + q * P;
    const int dst = (j / NS) * NS * R + j % NS;
#pragma unroll
    for (int r = 0; r < R; ++r) buf[padded(dst + r * NS)] = v[q * R + bit_reverse(r, LOG2R)];
  }
  frame_sync<P>();
  if constexpr (PASS + 1 < fft_pass_count(LOG2M)) fft_passes<LOG2M, PASS + 1>(v, buf, fft_tw, lane);
}

// Replaces Z in buf by the power spectrum |X_k|^2, k in [0, M], as floats.
// Pair k <= M/2 gives X_k = E + W^k O and X_{M-k} = conj(E - W^k O) with
// E = (Z_k + conj Z_{M-k}) / 2, O = (Z_k - conj Z_{M-k}) / 2i, W = exp(-2 pi i / n_fft).
template <int LOG2M>
__device__ __forceinline__ void power_spectrum(float2* buf, const float2* __restrict__ rfft_tw,
                                               int lane) {
  constexpr int M = 1 << LOG2M, P = M / elems_per_thread(LOG2M), JOBS = M / 2 / P + 1;
  float lo[JOBS], hi[JOBS];
#pragma unroll
  for (int q = 0; q < JOBS; ++q) {
    const int k = lane + q * P;
    if (k <= M / 2) {
      const float2 a = buf[padded(k)], c = buf[padded((M - k) & (M - 1))];
      const float2 e2 = make_float2(a.x + c.x, a.y - c.y);   // 2 E
      const float2 o2 = make_float2(a.y + c.y, c.x - a.x);   // 2 O
      const float2 wo = cmul(__ldg(rfft_tw + k), o2);
      lo[q] = 0.25f * cnorm(cadd(e2, wo));
      hi[q] = 0.25f * cnorm(csub(e2, wo));
    }
  }
  frame_sync<P>();
  float* power = reinterpret_cast<float*>(buf);
#pragma unroll
  for (int q = 0; q < JOBS; ++q) {
    const int k = lane + q * P;
    if (k <= M / 2) {
      power[k] = lo[q];
      power[M - k] = hi[q];
    }
  }
}

__device__ __forceinline__ void store(const LogMelArgs& a, int64_t i, float v) {
  switch (a.out_dtype) {
    case at::kBFloat16: static_cast<c10::BFloat16*>(a.out)[i] = c10::BFloat16(v); break;
    case at::kHalf: static_cast<c10::Half*>(a.out)[i] = c10::Half(v); break;
    default: static_cast<float*>(a.out)[i] = v; break;
  }
}

template <int LOG2M, typename In>
__global__ void __launch_bounds__(kThreads)
    log_mel_kernel(const In* __restrict__ wave, const LogMelArgs a) {
  constexpr int P = (1 << LOG2M) / elems_per_thread(LOG2M);
  constexpr int F = frames_per_block(LOG2M), STRIDE = frame_stride(LOG2M);
  extern __shared__ float2 smem[];

  const int64_t b = blockIdx.x / a.tiles;
  const int t0 = static_cast<int>(blockIdx.x % a.tiles) * F;
  const int len = a.lengths != nullptr ? static_cast<int>(a.lengths[b]) : a.n_samples;
  const int n_valid = 1 + len / a.hop;  // frames of the clip at its own length

  if (t0 < n_valid) {  // the same for the whole block
    const int lane = threadIdx.x % P, f = threadIdx.x / P;
    // A frame past the clip's end recomputes its last frame, so every read
    // stays inside the clip; its output is the floor.
    const int t = min(t0 + f, n_valid - 1);
    float2* buf = smem + f * STRIDE;
    float2 v[elems_per_thread(LOG2M)];
    if (!load_frame<LOG2M>(v, wave + b * a.n_samples, t * a.hop - a.pad, len, a.window, lane)) {
      atomicMin(a.bad_clip, static_cast<int>(b));
    }
    fft_passes<LOG2M, 0>(v, buf, a.fft_tw, lane);
    power_spectrum<LOG2M>(buf, a.rfft_tw, lane);
    __syncthreads();
  }

  // Mel sums: thread u takes frame u % F of filter u / F, so a warp stores
  // runs of consecutive frames of a mel row. Each filter visits only its support.
  for (int u = threadIdx.x; u < a.n_mels * F; u += kThreads) {
    const int m = u / F, f = u % F, t = t0 + f;
    if (t >= a.n_frames) continue;
    float db = kLogMelFloorDb;
    if (t < n_valid) {
      const float* power = reinterpret_cast<const float*>(smem + f * STRIDE);
      const float* w = a.mel_w + (m & 1);
      const int2 support = __ldg(a.mel_support + m);
      float acc = 0.0f;
      for (int k = support.x; k < support.y; ++k) acc += __ldg(w + 2 * k) * power[k];
      // 10 log10(max(acc, 1e-10)); __log2f errs by at most 2.5e-5 dB here.
      if (acc > kPowerFloor) db = kDbPerLog2 * __log2f(acc);
    }
    store(a, (b * a.n_mels + m) * a.n_frames + t, db);
  }
}

// ---- Tables -----------------------------------------------------------------

struct PlanArgs {
  float* window;
  float2* fft_tw;
  float2* rfft_tw;
  float* mel_w;
  int2* mel_support;
  int* bad_clip;
  MelGeometry mel;
  double window_scale;  // 1 / 32768 for int16 samples, else 1
  int n_fft, win_length, log2m, n_mels, n_tw;
};

// Fills the tables of one call in double precision: thread i computes entry i
// of [window | FFT twiddles | real-FFT twiddles | (filter, bin) pairs].
__global__ void log_mel_plan_kernel(const PlanArgs p) {
  const int m_half = p.n_fft / 2, n_freqs = m_half + 1;
  const int64_t total = p.n_fft + p.n_tw + (m_half / 2 + 1) + int64_t{p.n_mels} * n_freqs;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    int64_t j = i;
    if (j == 0 && p.bad_clip != nullptr) *p.bad_clip = INT_MAX;
    if (j < p.n_fft) {
      // The window times the sample scale (a power of two, so the products are
      // those of scaled samples).
      p.window[j] = static_cast<float>(padded_hann(j, p.n_fft, p.win_length) * p.window_scale);
      continue;
    }
    j -= p.n_fft;
    if (j < p.n_tw) {
      int pass = 1;
      while (j >= pass_twiddles(p.log2m, pass)) j -= pass_twiddles(p.log2m, pass++);
      const int64_t ns = int64_t{1} << (4 * pass), n = ns << pass_log2r(p.log2m, pass);
      const int64_t e = ((j / ns + 1) * (j % ns)) % n;  // r * (job % Ns) over Ns * R
      double s, c;
      sincospi(2.0 * e / n, &s, &c);
      p.fft_tw[i - p.n_fft] = make_float2(static_cast<float>(c), static_cast<float>(-s));
      continue;
    }
    j -= p.n_tw;
    if (j <= m_half / 2) {
      double s, c;
      sincospi(static_cast<double>(j) / m_half, &s, &c);
      p.rfft_tw[j] = make_float2(static_cast<float>(c), static_cast<float>(-s));
      continue;
    }
    j -= m_half / 2 + 1;
    const int64_t m = j / n_freqs, k = j % n_freqs;
    int64_t first, last;
    p.mel.support(m, &first, &last);
    if (k == 0) p.mel_support[m] = make_int2(static_cast<int>(first), static_cast<int>(last));
    if (k >= first && k < last) p.mel_w[2 * k + (m & 1)] = static_cast<float>(p.mel.weight(m, k));
  }
}

template <typename In, int LOG2M = kMinLog2M>
void launch_log_mel(int log2m, const In* wave, LogMelArgs args, int64_t batch,
                    cudaStream_t stream) {
  if constexpr (LOG2M <= kMaxLog2M) {
    if (log2m != LOG2M) return launch_log_mel<In, LOG2M + 1>(log2m, wave, args, batch, stream);
    constexpr int F = frames_per_block(LOG2M);
    args.tiles = (args.n_frames + F - 1) / F;
    const int64_t blocks = batch * args.tiles;
    TORCH_CHECK(blocks <= INT_MAX, "log_mel: batch too large for one CUDA launch (", batch,
                " clips)");
    const size_t smem = sizeof(float2) * F * frame_stride(LOG2M);
    log_mel_kernel<LOG2M, In><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(wave, args);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

}  // namespace

at::Tensor log_mel_cuda(const at::Tensor& wave, const std::optional<at::Tensor>& lengths,
                        int64_t sample_rate, int64_t n_fft, int64_t win_length, int64_t hop_length,
                        int64_t n_mels, double f_min, std::optional<double> f_max,
                        std::optional<at::ScalarType> out_dtype) {
  const LogMelConfig cfg = check_log_mel_args(wave, lengths, sample_rate, n_fft, win_length,
                                              hop_length, n_mels, f_min, f_max, out_dtype);
  int log2m = 0;
  while ((int64_t{2} << log2m) < cfg.n_fft) ++log2m;
  TORCH_CHECK(log2m <= kMaxLog2M, "log_mel: the CUDA kernel supports n_fft up to ",
              2 << kMaxLog2M, ", got ", cfg.n_fft);
  c10::cuda::CUDAGuard guard(wave.device());
  const int64_t batch = wave.size(0), n = wave.size(1), n_frames = cfg.frames_for(n);
  auto out = at::empty({batch, cfg.n_mels, n_frames}, wave.options().dtype(cfg.out_dtype));
  if (batch == 0) return out;
  // Sample and frame indices inside a clip are 32-bit.
  TORCH_CHECK(n <= INT_MAX - cfg.n_fft && cfg.n_mels <= INT_MAX / kThreads,
              "log_mel: clips of ", n, " samples or ", cfg.n_mels, " mel bands are too large");
  const auto x = wave.contiguous();
  const auto stream = c10::cuda::getCurrentCUDAStream();

  at::Tensor len;
  if (lengths.has_value()) {
    // A CPU lengths tensor goes through pinned memory so the copy never blocks.
    len = lengths->is_cuda() ? lengths->contiguous()
                             : lengths->contiguous().pin_memory().to(x.device(), at::kLong,
                                                                     /*non_blocking=*/true);
  }

  const bool floating = x.scalar_type() != at::kShort;
  const int m_half = static_cast<int>(cfg.n_fft / 2);
  const int n_tw = twiddle_offset(log2m, fft_pass_count(log2m));
  const int64_t n_freqs = cfg.n_freqs();
  // float tables: window | FFT twiddles | real-FFT twiddles | mel weights
  auto tables = at::empty({cfg.n_fft + 2 * n_tw + 2 * (m_half / 2 + 1) + 2 * n_freqs},
                          x.options().dtype(at::kFloat));
  // int tables: mel supports | bad clip flag
  auto ints = at::empty({2 * cfg.n_mels + 1}, x.options().dtype(at::kInt));
  float* tp = tables.data_ptr<float>();
  int* ip = ints.data_ptr<int>();
  PlanArgs plan{tp,
                reinterpret_cast<float2*>(tp + cfg.n_fft),
                reinterpret_cast<float2*>(tp + cfg.n_fft + 2 * n_tw),
                tp + cfg.n_fft + 2 * n_tw + 2 * (m_half / 2 + 1),
                reinterpret_cast<int2*>(ip),
                floating ? ip + 2 * cfg.n_mels : nullptr,
                MelGeometry(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max),
                floating ? 1.0 : 1.0 / 32768.0,
                static_cast<int>(cfg.n_fft),
                static_cast<int>(cfg.win_length),
                log2m,
                static_cast<int>(cfg.n_mels),
                n_tw};
  const int64_t plan_items = cfg.n_fft + n_tw + m_half / 2 + 1 + cfg.n_mels * n_freqs;
  const int plan_blocks = static_cast<int>(std::min<int64_t>((plan_items + 255) / 256, 1024));
  log_mel_plan_kernel<<<plan_blocks, 256, 0, stream>>>(plan);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  LogMelArgs args{len.defined() ? len.data_ptr<int64_t>() : nullptr,
                  plan.window,
                  plan.fft_tw,
                  plan.rfft_tw,
                  plan.mel_w,
                  plan.mel_support,
                  plan.bad_clip,
                  out.data_ptr(),
                  cfg.out_dtype,
                  static_cast<int>(n),
                  static_cast<int>(n_frames),
                  // A hop past the clip gives one frame, whatever its value.
                  static_cast<int>(std::min<int64_t>(cfg.hop_length, INT_MAX)),
                  static_cast<int>(cfg.pad()),
                  static_cast<int>(cfg.n_mels),
                  0};
  switch (x.scalar_type()) {
    case at::kFloat: launch_log_mel(log2m, x.data_ptr<float>(), args, batch, stream); break;
    case at::kHalf: launch_log_mel(log2m, x.data_ptr<at::Half>(), args, batch, stream); break;
    case at::kBFloat16:
      launch_log_mel(log2m, x.data_ptr<at::BFloat16>(), args, batch, stream);
      break;
    default: launch_log_mel(log2m, x.data_ptr<int16_t>(), args, batch, stream); break;
  }
  if (floating) {
    // The one synchronisation: int16 samples cannot be non-finite.
    const int bad = ints[2 * cfg.n_mels].item<int>();
    TORCH_CHECK(bad == INT_MAX, "log_mel: wave[", bad, "] contains NaN or Inf");
  }
  return out;
}

TORCH_LIBRARY_IMPL(psl, CUDA, m) { m.impl("log_mel", &log_mel_cuda); }

}  // namespace psl
