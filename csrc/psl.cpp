// The psl operator library: every schema is declared here, once. Backends
// register kernels in cpu/, cuda/ and autocast/.
#include <torch/extension.h>
#include <torch/library.h>

TORCH_LIBRARY(psl, m) {
  m.def(
      "log_mel(Tensor wave, Tensor? lengths=None, *, int sample_rate=16000, int n_fft=512, "
      "int win_length=512, int hop_length=160, int n_mels=64, float f_min=0.0, "
      "float? f_max=None, ScalarType? out_dtype=None) -> Tensor");
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
