// The analysis window of psl::log_mel, shared by the CPU and CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace psl {

// Sample j of the periodic Hann window of win_length, zero-padded to n_fft and
// centred, as torch.stft uses it.
PSL_HOST_DEVICE double padded_hann(int64_t j, int64_t n_fft, int64_t win_length) {
  const int64_t i = j - (n_fft - win_length) / 2;
  if (i < 0 || i >= win_length) return 0.0;
  return 0.5 - 0.5 * cos(2.0 * M_PI * static_cast<double>(i) / static_cast<double>(win_length));
}

}  // namespace psl
