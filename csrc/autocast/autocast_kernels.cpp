// Autocast rule: the psl ops ignore the autocast dtype. The front end and the
// label pooling always compute in float32 (their outputs are float32 unless
// log_mel is given an explicit out_dtype), so inside a bf16/fp16 autocast
// region they run exactly as outside it, with autocast switched off.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/library.h>

namespace psl {
namespace {

template <c10::DispatchKey Key>
at::Tensor log_mel_autocast(const at::Tensor& wave, const std::optional<at::Tensor>& lengths,
                            int64_t sample_rate, int64_t n_fft, int64_t win_length,
                            int64_t hop_length, int64_t n_mels, double f_min,
                            std::optional<double> f_max,
                            std::optional<at::ScalarType> out_dtype) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(Key);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("psl::log_mel", "")
                       .typed<decltype(log_mel_autocast<Key>)>();
  return op.call(wave, lengths, sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max,
                 out_dtype);
}

template <c10::DispatchKey Key>
at::Tensor chunk_pool_autocast(const at::Tensor& frames, const at::Tensor& starts, double length,
                               const std::optional<at::Tensor>& valid, c10::string_view mode) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(Key);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("psl::chunk_pool", "")
                       .typed<decltype(chunk_pool_autocast<Key>)>();
  return op.call(frames, starts, length, valid, mode);
}

}  // namespace

TORCH_LIBRARY_IMPL(psl, AutocastCPU, m) {
  m.impl("log_mel", log_mel_autocast<c10::DispatchKey::AutocastCPU>);
  m.impl("chunk_pool", chunk_pool_autocast<c10::DispatchKey::AutocastCPU>);
}

TORCH_LIBRARY_IMPL(psl, AutocastCUDA, m) {
  m.impl("log_mel", log_mel_autocast<c10::DispatchKey::AutocastCUDA>);
  m.impl("chunk_pool", chunk_pool_autocast<c10::DispatchKey::AutocastCUDA>);
}

}  // namespace psl
