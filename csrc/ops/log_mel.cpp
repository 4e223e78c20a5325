#include "log_mel.h"

#include <cmath>

namespace psl {

LogMelConfig check_log_mel_args(const at::Tensor& wave, const std::optional<at::Tensor>& lengths,
                                int64_t sample_rate, int64_t n_fft, int64_t win_length,
                                int64_t hop_length, int64_t n_mels, double f_min,
                                std::optional<double> f_max,
                                std::optional<at::ScalarType> out_dtype) {
  TORCH_CHECK(wave.dim() == 2, "log_mel: wave must be [batch, samples], got shape ", wave.sizes());
  const auto dt = wave.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16 || dt == at::kShort,
              "log_mel: wave must be float32, float16, bfloat16 or int16, got ", dt);
  TORCH_CHECK(n_fft >= 8 && (n_fft & (n_fft - 1)) == 0,
              "log_mel: n_fft must be a power of two >= 8, got ", n_fft);
  TORCH_CHECK(win_length >= 1 && win_length <= n_fft,
              "log_mel: win_length must be in [1, n_fft=", n_fft, "], got ", win_length);
  TORCH_CHECK(hop_length >= 1, "log_mel: hop_length must be positive, got ", hop_length);
  TORCH_CHECK(sample_rate >= 2, "log_mel: sample_rate must be >= 2, got ", sample_rate);
  TORCH_CHECK(n_mels >= 1, "log_mel: n_mels must be positive, got ", n_mels);
  const double nyquist = static_cast<double>(sample_rate / 2);
  const double f_hi = f_max.value_or(nyquist);
  TORCH_CHECK(f_min >= 0.0 && f_min < f_hi && f_hi <= nyquist,
              "log_mel: need 0 <= f_min < f_max <= sample_rate // 2 = ", nyquist, ", got f_min=",
              f_min, ", f_max=", f_hi);
  const auto odt = out_dtype.value_or(at::kFloat);
  TORCH_CHECK(odt == at::kFloat || odt == at::kBFloat16 || odt == at::kHalf,
              "log_mel: out_dtype must be float32, bfloat16 or float16, got ", odt);

  LogMelConfig cfg{sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_hi, odt};
  const int64_t n = wave.size(1);
  if (lengths.has_value()) {
    const auto& len = *lengths;
    TORCH_CHECK(len.dim() == 1 && len.size(0) == wave.size(0), "log_mel: lengths must be [batch=",
                wave.size(0), "], got shape ", len.sizes());
    TORCH_CHECK(len.scalar_type() == at::kLong, "log_mel: lengths must be int64, got ",
                len.scalar_type());
    // lengths may stay on the CPU for a CUDA wave: that spares the device
    // synchronisation the range check below needs otherwise.
    TORCH_CHECK(len.device() == wave.device() || len.is_cpu(), "log_mel: lengths is on ",
                len.device(), " but wave is on ", wave.device());
    const auto host = len.cpu();
    const int64_t* l = host.data_ptr<int64_t>();
    for (int64_t b = 0; b < host.size(0); ++b) {
      TORCH_CHECK(l[b] >= cfg.min_samples() && l[b] <= n, "log_mel: lengths[", b, "] = ", l[b],
                  " is outside [", cfg.min_samples(), ", ", n,
                  "]: a clip needs at least n_fft // 2 + 1 samples for reflect padding and "
                  "cannot be longer than wave");
    }
  } else if (wave.size(0) > 0) {
    TORCH_CHECK(n >= cfg.min_samples(), "log_mel: clips have ", n, " samples; reflect padding with n_fft=",
                n_fft, " needs at least ", cfg.min_samples());
  }
  return cfg;
}

}  // namespace psl
