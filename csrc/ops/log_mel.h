// psl::log_mel — argument resolution and validation shared by every backend.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace psl {

// Floor of the output in dB: 10 * log10(1e-10).
constexpr float kLogMelFloorDb = -100.0f;
constexpr float kPowerFloor = 1e-10f;

struct LogMelConfig {
  int64_t sample_rate;
  int64_t n_fft;
  int64_t win_length;
  int64_t hop_length;
  int64_t n_mels;
  double f_min;
  double f_max;
  at::ScalarType out_dtype;

  int64_t n_freqs() const { return n_fft / 2 + 1; }
  int64_t pad() const { return n_fft / 2; }
  // Shortest clip that reflect padding by n_fft / 2 accepts.
  int64_t min_samples() const { return n_fft / 2 + 1; }
  int64_t frames_for(int64_t n_samples) const { return 1 + n_samples / hop_length; }
};

// Checks every argument (shapes, dtypes, devices, ranges, clip lengths) and
// returns the resolved configuration. Non-finite samples are detected by the
// kernels themselves, which see every sample anyway.
LogMelConfig check_log_mel_args(const at::Tensor& wave, const std::optional<at::Tensor>& lengths,
                                int64_t sample_rate, int64_t n_fft, int64_t win_length,
                                int64_t hop_length, int64_t n_mels, double f_min,
                                std::optional<double> f_max,
                                std::optional<at::ScalarType> out_dtype);

}  // namespace psl
