// The psl operator library: every schema is declared here, once. Backends
// register kernels in cpu/, cuda/ and autocast/; each checks its arguments with
// the one check of its op in ops/ (check_log_mel_args, check_chunk_pool_args,
// check_finite_starts) before any work, and no Python layer checks them again.
#include <torch/extension.h>
#include <torch/library.h>

TORCH_LIBRARY(psl, m) {
  // The front end's settings have no defaults here: the callers pass every one, and
  // their defaults are written once, in psl/ops/contract.py (LogMelSettings).
  m.def(
      "log_mel(Tensor wave, Tensor? lengths=None, *, int sample_rate, int n_fft, int win_length, "
      "int hop_length, int n_mels, float f_min, float? f_max, ScalarType? out_dtype=None) -> Tensor");
  m.def("chunk_pool(Tensor frames, Tensor starts, float length, Tensor? valid=None, "
        "str mode=\"mean\") -> Tensor");
}

namespace {
bool cuda_kernels_built() {
#ifdef PSL_WITH_CUDA
  return true;
#else
  return false;
#endif
}
}  // namespace

// Importing psl._C runs the static registrations above.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("cuda_kernels_built", &cuda_kernels_built,
             "Whether this build of the extension contains the CUDA kernels.");
}
