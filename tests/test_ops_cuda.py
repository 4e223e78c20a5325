"""CUDA kernels against the CPU references. Skipped unless a GPU and a CUDA build are present;
scripts/gpu_check.sh runs them on the GPU machine."""

import pytest
import torch

from psl import ops
from psl.ops import reference
from references import assert_log_mel_close, chunk_pool_float64, torchaudio_log_mel

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and ops.cuda_kernels_built()), reason="needs a GPU and psl built with CUDA"
)


def poisoned_allocator_block(shape, dtype):
    """Leaves a NaN-filled block in the caching allocator, so an output element the
    kernel forgets to write shows up as NaN."""
    block = torch.full(shape, float("nan"), dtype=dtype, device="cuda")
    del block


@pytest.mark.parametrize("dtype", [torch.float32, torch.int16, torch.bfloat16])
@pytest.mark.parametrize("batch, n", [(1, 160000), (5, 16037), (3, 257)])
def test_log_mel_matches_torchaudio(rng, dtype, batch, n):
    wave = torch.randn(batch, n, generator=rng) * 0.3
    if dtype == torch.int16:
        wave = (wave * 32768).clamp(-32768, 32767)
    wave = wave.to(dtype)
    poisoned_allocator_block((batch, 64, 1 + n // 160), torch.float32)
    out = ops.log_mel(wave.cuda())
    torch.cuda.synchronize()
    assert_log_mel_close(out.cpu(), torchaudio_log_mel(wave))


@pytest.mark.parametrize(
    "cfg", [dict(n_mels=128), dict(hop_length=97, n_fft=256, win_length=200), dict(n_fft=1024, sample_rate=32000)]
)
def test_log_mel_settings_and_lengths(rng, cfg):
    wave = torch.randn(4, 20011, generator=rng)
    lengths = torch.tensor([20011, 600, 12345, 9999])
    expected = reference.log_mel(wave, lengths, **cfg)
    for lengths_device in ("cpu", "cuda"):
        out = ops.log_mel(wave.cuda(), lengths.to(lengths_device), **cfg)
        torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=2e-3)


def test_log_mel_reduced_precision_output(rng):
    wave = torch.randn(2, 16000, generator=rng).cuda()
    full = ops.log_mel(wave)
    torch.testing.assert_close(ops.log_mel(wave, out_dtype=torch.bfloat16).float(), full, rtol=8e-3, atol=1e-2)


def test_log_mel_names_the_clip_with_nan(rng):
    wave = torch.randn(4, 4000, generator=rng)
    wave[3, 17] = float("nan")
    with pytest.raises(RuntimeError, match=r"wave\[3\] contains NaN or Inf"):
        ops.log_mel(wave.cuda())


def test_log_mel_under_autocast_is_float32(rng):
    wave = torch.randn(2, 4000, generator=rng).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert ops.log_mel(wave).dtype == torch.float32


@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_chunk_pool_matches_float64(rng, mode, dtype):
    frames = torch.rand(3, 101, 527, generator=rng).to(dtype)
    starts = torch.rand(3, 13, generator=rng) * 120 - 10
    valid = torch.tensor([101, 40, 0])
    poisoned_allocator_block((3, 13, 527), torch.float32)
    out = ops.chunk_pool(frames.cuda(), starts.cuda(), 9.7, valid.cuda(), mode)
    expected = torch.from_numpy(chunk_pool_float64(frames, starts, 9.7, valid, mode))
    torch.testing.assert_close(out.cpu().double(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_chunk_pool_refuses_a_non_finite_start_as_the_cpu_kernel_does(bad):
    frames, starts = torch.rand(2, 10, 3), torch.tensor([[0.0, 1.0], [2.0, bad]])
    with pytest.raises(RuntimeError) as on_cpu:
        ops.chunk_pool(frames, starts, 2.0)
    with pytest.raises(RuntimeError) as on_gpu:
        ops.chunk_pool(frames.cuda(), starts.cuda(), 2.0)
    assert "chunk_pool: starts[1, 1] is" in str(on_cpu.value)
    assert str(on_gpu.value).splitlines()[0] == str(on_cpu.value).splitlines()[0]
