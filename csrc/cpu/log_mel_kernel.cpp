// CPU kernel of psl::log_mel: framing, window, real FFT, power, sparse mel
// filterbank and log, fused per group of frames so that no spectrogram is ever
// materialised.
//
// The unit of work is a group of kLanes consecutive frames of one clip. Every
// step is written on `Lanes` vectors (one frame per SIMD lane), so the FFT
// butterflies, the power and the mel sums are plain vertical SIMD operations
// with no shuffles, and the kLanes results of a mel band are consecutive
// output elements ([B, n_mels, T] layout). A group's working set (two arrays
// of n_fft / 2 complex lanes) stays in L1.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <vector>

#include "ops/log_mel.h"
#include "ops/mel_scale.h"
#include "ops/window.h"

namespace psl {
namespace {

constexpr int64_t kLanes = 8;
// The explicit alignment keeps alignof(Lanes) at 32 in the plain x86-64 build
// too (which would otherwise use 16), so the AVX build can rely on it.
typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float)), aligned(32)));
static_assert(alignof(Lanes) == 32, "Lanes must be 32-byte aligned");

// Tables that depend only on the configuration, computed in double precision.
struct Plan {
  int64_t n_fft, half, hop, pad, n_mels;
  std::vector<float> window;              // n_fft, times the int16 scale if any
  std::vector<int32_t> bit_reversed;      // half
  std::vector<float> twiddle_re, twiddle_im;  // half / 2: exp(-2 pi i j / half)
  std::vector<float> split_re, split_im;  // half + 1: exp(-2 pi i k / n_fft)
  std::vector<int64_t> mel_first, mel_last, mel_offset;
  std::vector<float> mel_weights;         // the non-zero part of each filter

  Plan(const LogMelConfig& cfg, float input_scale)
      : n_fft(cfg.n_fft), half(cfg.n_fft / 2), hop(cfg.hop_length), pad(cfg.pad()),
        n_mels(cfg.n_mels) {
    window.resize(n_fft);
    for (int64_t i = 0; i < n_fft; ++i) {
      window[i] = static_cast<float>(padded_hann(i, n_fft, cfg.win_length) * input_scale);
    }

    int bits = 0;
    while ((int64_t{1} << bits) < half) ++bits;
    bit_reversed.resize(half);
    for (int64_t j = 0; j < half; ++j) {
      int32_t r = 0;
      for (int b = 0; b < bits; ++b) r |= ((j >> b) & 1) << (bits - 1 - b);
      bit_reversed[j] = r;
    }
    twiddle_re.resize(std::max<int64_t>(half / 2, 1));
    twiddle_im.resize(twiddle_re.size());
    for (int64_t j = 0; j < half / 2; ++j) {
      const double a = -2.0 * M_PI * static_cast<double>(j) / static_cast<double>(half);
      twiddle_re[j] = static_cast<float>(std::cos(a));
      twiddle_im[j] = static_cast<float>(std::sin(a));
    }
    split_re.resize(half + 1);
    split_im.resize(half + 1);
    for (int64_t k = 0; k <= half; ++k) {
      const double a = -2.0 * M_PI * static_cast<double>(k) / static_cast<double>(n_fft);
      split_re[k] = static_cast<float>(std::cos(a));
      split_im[k] = static_cast<float>(std::sin(a));
    }

    const MelGeometry mel(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max);
    mel_first.resize(n_mels);
    mel_last.resize(n_mels);
    mel_offset.resize(n_mels);
    for (int64_t m = 0; m < n_mels; ++m) {
      mel.support(m, &mel_first[m], &mel_last[m]);
      mel_offset[m] = static_cast<int64_t>(mel_weights.size());
      for (int64_t k = mel_first[m]; k < mel_last[m]; ++k) {
        mel_weights.push_back(static_cast<float>(mel.weight(m, k)));
      }
    }
  }
};

// One group's working arrays in a single 32-byte aligned block (std::vector
// would drop the alignment attribute of Lanes).
class Scratch {
 public:
  explicit Scratch(const Plan& p)
      : block_(std::aligned_alloc(alignof(Lanes), sizeof(Lanes) * (3 * p.half + 1 + p.n_mels))),
        re(static_cast<Lanes*>(block_.get())), im(re + p.half), power(im + p.half), mel_db(power + p.half + 1) {
    TORCH_CHECK(block_ != nullptr, "log_mel: out of memory for the kernel's scratch space");
  }

 private:
  struct Free {
    void operator()(void* ptr) const { std::free(ptr); }
  };
  std::unique_ptr<void, Free> block_;

 public:
  Lanes* const re;
  Lanes* const im;
  Lanes* const power;
  Lanes* const mel_db;
};

template <typename scalar_t>
inline float to_float(scalar_t v) {
  return static_cast<float>(v);
}

// Sample i of the clip reflect-padded by `pad` on both sides at its own length.
inline int64_t reflect(int64_t i, int64_t len) {
  if (i < 0) return -i;
  if (i >= len) return 2 * (len - 1) - i;
  return i;
}

// Loads lane l: the windowed frame whose first sample is x[start] into the
// complex FFT input z[j] = x[2j] + i x[2j + 1], in bit-reversed order. kReflect:
// the frame reaches into the padding, so its sample indices go through reflect().
// Returns 0 (of either sign), or NaN when a loaded sample is NaN or infinite.
template <bool kReflect, typename scalar_t>
inline float load_frame(const scalar_t* x, int64_t len, int64_t start, int64_t l, const Plan& p,
                        Scratch& s) {
  float probe = 0.0f;  // becomes NaN once a non-finite sample is multiplied by 0
  for (int64_t j = 0; j < p.half; ++j) {
    const int64_t i = start + 2 * j;
    const float a = to_float(x[kReflect ? reflect(i, len) : i]);
    const float b = to_float(x[kReflect ? reflect(i + 1, len) : i + 1]);
    probe += a * 0.0f + b * 0.0f;
    const int32_t r = p.bit_reversed[j];
    s.re[r][l] = a * p.window[2 * j];
    s.im[r][l] = b * p.window[2 * j + 1];
  }
  return probe;
}

// Loads the group's frames t0 .. t0 + lanes - 1 (the lanes past them are zeroed).
// Returns false when a loaded sample is NaN or infinite.
template <typename scalar_t>
bool load_frames(const scalar_t* x, int64_t len, int64_t t0, int64_t lanes, const Plan& p,
                 Scratch& s) {
  float probe = 0.0f;
  for (int64_t l = 0; l < kLanes; ++l) {
    const int64_t start = (t0 + l) * p.hop - p.pad;
    if (l >= lanes) {
      for (int64_t j = 0; j < p.half; ++j) s.re[j][l] = s.im[j][l] = 0.0f;
    } else if (start >= 0 && start + p.n_fft <= len) {
      probe += load_frame<false>(x, len, start, l, p, s);
    } else {
      probe += load_frame<true>(x, len, start, l, p, s);
    }
  }
  return probe == 0.0f;
}

// In-place radix-2 decimation-in-time FFT of `half` complex lanes whose input
// is in bit-reversed order; the output is in natural order.
#define PSL_ALWAYS_INLINE inline __attribute__((always_inline))

PSL_ALWAYS_INLINE void fft(const Plan& p, Scratch& s) {
  Lanes* re = s.re;
  Lanes* im = s.im;
  for (int64_t size = 2; size <= p.half; size *= 2) {
    const int64_t h = size / 2, stride = p.half / size;
    for (int64_t j = 0; j < h; ++j) {
      const float wr = p.twiddle_re[j * stride], wi = p.twiddle_im[j * stride];
      for (int64_t a = j; a < p.half; a += size) {
        const int64_t b = a + h;
        const Lanes tr = re[b] * wr - im[b] * wi;
        const Lanes ti = re[b] * wi + im[b] * wr;
        re[b] = re[a] - tr;
        im[b] = im[a] - ti;
        re[a] += tr;
        im[a] += ti;
      }
    }
  }
}

// Power spectrum |X_k|^2, k = 0..n_fft/2, of the real frames from the
// half-length complex FFT Z of their packed even/odd samples:
// X_k = E_k + exp(-2 pi i k / n_fft) O_k, E_k = (Z_k + conj Z_{M-k}) / 2,
// O_k = (Z_k - conj Z_{M-k}) / 2i.
PSL_ALWAYS_INLINE void power_spectrum(const Plan& p, Scratch& s) {
  const Lanes* re = s.re;
  const Lanes* im = s.im;
  Lanes* power = s.power;
  const int64_t M = p.half;
  power[0] = (re[0] + im[0]) * (re[0] + im[0]);
  power[M] = (re[0] - im[0]) * (re[0] - im[0]);
  for (int64_t k = 1; k < M; ++k) {
    const Lanes er = (re[k] + re[M - k]) * 0.5f;
    const Lanes ei = (im[k] - im[M - k]) * 0.5f;
    const Lanes orr = (im[k] + im[M - k]) * 0.5f;
    const Lanes oi = (re[M - k] - re[k]) * 0.5f;
    const float c = p.split_re[k], sn = p.split_im[k];
    const Lanes xr = er + orr * c - oi * sn;
    const Lanes xi = ei + oi * c + orr * sn;
    power[k] = xr * xr + xi * xi;
  }
}

PSL_ALWAYS_INLINE void mel_log(const Plan& p, Scratch& s) {
  for (int64_t m = 0; m < p.n_mels; ++m) {
    Lanes acc = {};
    const float* w = p.mel_weights.data() + p.mel_offset[m];
    for (int64_t k = p.mel_first[m]; k < p.mel_last[m]; ++k) acc += s.power[k] * *w++;
    for (int64_t l = 0; l < kLanes; ++l) {
      s.mel_db[m][l] = 10.0f * std::log10(std::max(acc[l], kPowerFloor));
    }
  }
}

// The arithmetic of a group, from its loaded FFT input to s.mel_db. Built for
// plain x86-64 and, chosen at load time where the CPU has them, for AVX + FMA,
// where a Lanes vector is one register.
__attribute__((target_clones("fma", "default"))) void transform_group(const Plan& p, Scratch& s) {
  fft(p, s);
  power_spectrum(p, s);
  mel_log(p, s);
}

template <typename out_t>
void write_mel(const Plan& p, const Scratch& s, out_t* out, int64_t T, int64_t t0, int64_t lanes) {
  for (int64_t m = 0; m < p.n_mels; ++m) {
    out_t* row = out + m * T + t0;
    for (int64_t l = 0; l < lanes; ++l) row[l] = static_cast<out_t>(s.mel_db[m][l]);
  }
}

template <typename out_t>
void write_floor(int64_t n_mels, out_t* out, int64_t T, int64_t t_begin, int64_t t_end) {
  for (int64_t m = 0; m < n_mels; ++m) {
    std::fill(out + m * T + t_begin, out + m * T + t_end, static_cast<out_t>(kLogMelFloorDb));
  }
}

template <typename scalar_t, typename out_t>
void log_mel_loop(const at::Tensor& wave, const int64_t* lengths, const LogMelConfig& cfg,
                  at::Tensor& out) {
  const float scale = std::is_same<scalar_t, int16_t>::value ? 1.0f / 32768.0f : 1.0f;
  const Plan plan(cfg, scale);
  const int64_t B = wave.size(0), N = wave.size(1), T = out.size(2);
  const int64_t groups = (T + kLanes - 1) / kLanes;
  const scalar_t* x = wave.data_ptr<scalar_t>();
  out_t* y = out.data_ptr<out_t>();
  std::atomic<int64_t> first_bad{std::numeric_limits<int64_t>::max()};

  at::parallel_for(0, B * groups, 4, [&](int64_t begin, int64_t end) {
    Scratch scratch(plan);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / groups, t0 = (i % groups) * kLanes;
      const int64_t len = lengths ? lengths[b] : N;
      const int64_t group_end = std::min(t0 + kLanes, T);
      const int64_t lanes = std::clamp<int64_t>(cfg.frames_for(len) - t0, 0, group_end - t0);
      out_t* out_b = y + b * cfg.n_mels * T;
      if (lanes > 0) {
        if (!load_frames(x + b * N, len, t0, lanes, plan, scratch)) {
          int64_t seen = first_bad.load();
          while (b < seen && !first_bad.compare_exchange_weak(seen, b)) {
          }
        }
        transform_group(plan, scratch);
        write_mel(plan, scratch, out_b, T, t0, lanes);
      }
      if (t0 + lanes < group_end) write_floor(cfg.n_mels, out_b, T, t0 + lanes, group_end);
    }
  });
  const int64_t bad = first_bad.load();
  TORCH_CHECK(bad == std::numeric_limits<int64_t>::max(), "log_mel: wave[", bad,
              "] contains NaN or Inf");
}

template <typename scalar_t>
void dispatch_out(const at::Tensor& wave, const int64_t* lengths, const LogMelConfig& cfg,
                  at::Tensor& out) {
  switch (cfg.out_dtype) {
    case at::kFloat: return log_mel_loop<scalar_t, float>(wave, lengths, cfg, out);
    case at::kBFloat16: return log_mel_loop<scalar_t, at::BFloat16>(wave, lengths, cfg, out);
    default: return log_mel_loop<scalar_t, at::Half>(wave, lengths, cfg, out);
  }
}

at::Tensor log_mel_cpu(const at::Tensor& wave, const std::optional<at::Tensor>& lengths,
                       int64_t sample_rate, int64_t n_fft, int64_t win_length, int64_t hop_length,
                       int64_t n_mels, double f_min, std::optional<double> f_max,
                       std::optional<at::ScalarType> out_dtype) {
  const LogMelConfig cfg = check_log_mel_args(wave, lengths, sample_rate, n_fft, win_length,
                                              hop_length, n_mels, f_min, f_max, out_dtype);
  const auto x = wave.contiguous();
  auto out = at::empty({x.size(0), n_mels, cfg.frames_for(x.size(1))},
                       x.options().dtype(cfg.out_dtype));
  at::Tensor len;
  if (lengths.has_value()) len = lengths->contiguous();
  const int64_t* len_ptr = len.defined() ? len.data_ptr<int64_t>() : nullptr;
  switch (x.scalar_type()) {
    case at::kFloat: dispatch_out<float>(x, len_ptr, cfg, out); break;
    case at::kHalf: dispatch_out<at::Half>(x, len_ptr, cfg, out); break;
    case at::kBFloat16: dispatch_out<at::BFloat16>(x, len_ptr, cfg, out); break;
    default: dispatch_out<int16_t>(x, len_ptr, cfg, out); break;
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(psl, CPU, m) { m.impl("log_mel", &log_mel_cpu); }

}  // namespace psl
