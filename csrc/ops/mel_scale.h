// HTK mel filterbank geometry shared by the CPU and CUDA kernels.
//
// Reproduces torchaudio.functional.melscale_fbanks(norm=None, mel_scale="htk"):
// n_mels triangles whose corners are n_mels + 2 points evenly spaced on the mel
// scale between f_min and f_max, evaluated at the rfft bin frequencies
// linspace(0, sample_rate // 2, n_fft // 2 + 1). Adjacent triangles share their
// corners, so every FFT bin feeds at most two filters: the kernels only visit
// the bins inside each filter's support instead of multiplying by a dense
// [n_freqs, n_mels] matrix.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace psl {

PSL_HOST_DEVICE double hz_to_mel_htk(double hz) {
  return 2595.0 * log10(1.0 + hz / 700.0);
}

PSL_HOST_DEVICE double mel_to_hz_htk(double mel) {
  return 700.0 * (pow(10.0, mel / 2595.0) - 1.0);
}

struct MelGeometry {
  int64_t n_freqs;   // n_fft / 2 + 1
  double bin_hz;     // spacing of the rfft bins as torchaudio defines it
  double mel_min;
  double mel_step;   // distance between consecutive triangle corners in mel

  PSL_HOST_DEVICE MelGeometry(int64_t sample_rate, int64_t n_fft, int64_t n_mels,
                              double f_min, double f_max)
      : n_freqs(n_fft / 2 + 1),
        bin_hz(static_cast<double>(sample_rate / 2) / static_cast<double>(n_fft / 2)),
        mel_min(hz_to_mel_htk(f_min)),
        mel_step((hz_to_mel_htk(f_max) - hz_to_mel_htk(f_min)) / static_cast<double>(n_mels + 1)) {}

  // Frequency (Hz) of corner i, 0 <= i < n_mels + 2.
  PSL_HOST_DEVICE double corner_hz(int64_t i) const {
    return mel_to_hz_htk(mel_min + mel_step * static_cast<double>(i));
  }

  // Weight of rfft bin k in filter m: the triangle rising from corner m to
  // corner m + 1 and falling to corner m + 2, clipped at zero.
  PSL_HOST_DEVICE double weight(int64_t m, int64_t k) const {
    const double f = bin_hz * static_cast<double>(k);
    const double lo = corner_hz(m), mid = corner_hz(m + 1), hi = corner_hz(m + 2);
    const double up = (f - lo) / (mid - lo);
    const double down = (hi - f) / (hi - mid);
    const double w = up < down ? up : down;
    return w > 0.0 ? w : 0.0;
  }

  // Half-open range [first, last) of bins that can have a non-zero weight in
  // filter m (the bins strictly between its outer corners), clamped to the
  // spectrum. Empty when the triangle falls between two bins.
  PSL_HOST_DEVICE void support(int64_t m, int64_t* first, int64_t* last) const {
    int64_t a = static_cast<int64_t>(floor(corner_hz(m) / bin_hz)) + 1;
    int64_t b = static_cast<int64_t>(ceil(corner_hz(m + 2) / bin_hz));
    a = a < 0 ? 0 : a;
    b = b > n_freqs ? n_freqs : b;
    *first = a;
    *last = b > a ? b : a;
  }
};

}  // namespace psl
