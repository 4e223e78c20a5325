"""How the ops are registered: schema and fake kernels (opcheck, torch.compile), the
float32 autocast rule, and the pure-torch fallback when the extension is missing."""

import warnings

import pytest
import torch

from psl import ops
from psl.ops import reference
from psl.ops.contract import LOG_MEL_DEFAULTS
from references import assert_log_mel_close, torchaudio_log_mel

native_only = pytest.mark.skipif(not ops.native_available(), reason="psl._C is not built")


def log_mel_samples(rng):
    """Arguments of torch.ops.psl.log_mel, which takes every setting (its schema has no defaults)."""
    wave = torch.randn(3, 4000, generator=rng)
    settings = LOG_MEL_DEFAULTS.as_kwargs()
    return [
        ((wave,), settings),
        ((wave, torch.tensor([4000, 1000, 2501])), {**settings, "out_dtype": torch.bfloat16}),
        (((wave * 8000).to(torch.int16),), {**settings, "n_mels": 40, "hop_length": 320, "f_max": 7000.0}),
    ]


def chunk_pool_samples(rng):
    frames = torch.rand(2, 30, 5, generator=rng).half()
    starts = torch.rand(2, 4, generator=rng) * 30
    return [
        ((frames, starts, 2.5), {}),
        ((frames, starts, 7.0, torch.tensor([30, 12])), {"mode": "max"}),
    ]


@native_only
def test_opcheck_log_mel(rng):
    for args, kwargs in log_mel_samples(rng):
        torch.library.opcheck(torch.ops.psl.log_mel.default, args, kwargs)


@native_only
def test_opcheck_chunk_pool(rng):
    for args, kwargs in chunk_pool_samples(rng):
        torch.library.opcheck(torch.ops.psl.chunk_pool.default, args, kwargs)


@native_only
def test_torch_compile_traces_through_both_ops(rng):
    def front_end_and_targets(wave, lengths, frames, starts):
        return ops.log_mel(wave, lengths) * 2.0, ops.chunk_pool(frames, starts, 3.0) + 1.0

    compiled = torch.compile(front_end_and_targets, backend="aot_eager", fullgraph=True)
    args = (
        torch.randn(2, 3000, generator=rng),
        torch.tensor([3000, 2000]),
        torch.rand(2, 20, 4, generator=rng),
        torch.rand(2, 3, generator=rng) * 20,
    )
    for got, want in zip(compiled(*args), front_end_and_targets(*args)):
        torch.testing.assert_close(got, want)


@native_only
@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16])
def test_outputs_stay_float32_under_autocast(rng, amp_dtype):
    wave = torch.randn(2, 4000, generator=rng)
    frames = torch.rand(2, 30, 5, generator=rng)
    starts = torch.rand(2, 4, generator=rng) * 30
    with torch.autocast("cpu", dtype=amp_dtype):
        mel = ops.log_mel(wave)
        pooled = ops.chunk_pool(frames, starts, 4.0)
    assert mel.dtype == torch.float32 and pooled.dtype == torch.float32
    assert torch.equal(mel, ops.log_mel(wave))
    assert torch.equal(pooled, ops.chunk_pool(frames, starts, 4.0))


@native_only
def test_the_schema_leaves_no_setting_to_a_default(rng):
    with pytest.raises(RuntimeError, match="sample_rate"):
        torch.ops.psl.log_mel.default(torch.randn(1, 4000, generator=rng))


@native_only
def test_reference_gives_the_native_results(rng):
    for args, kwargs in log_mel_samples(rng):
        native = ops.log_mel(*args, **kwargs)
        # A bfloat16 result may round the other way when the float32 values differ slightly.
        rtol = 2**-7 if native.dtype == torch.bfloat16 else 0.0
        torch.testing.assert_close(reference.log_mel(*args, **kwargs).float(), native.float(), rtol=rtol, atol=2e-3)
    for args, kwargs in chunk_pool_samples(rng):
        torch.testing.assert_close(reference.chunk_pool(*args, **kwargs), ops.chunk_pool(*args, **kwargs))


def test_missing_extension_falls_back_with_one_warning(monkeypatch, rng):
    monkeypatch.setattr(ops, "_C", None)
    monkeypatch.setattr(ops, "_warned", False)
    wave = torch.randn(2, 4000, generator=rng)
    with pytest.warns(RuntimeWarning, match="pip install --no-build-isolation"):
        fallback = ops.log_mel(wave)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pooled = ops.chunk_pool(torch.rand(1, 10, 2, generator=rng), torch.tensor([[1.5]]), 3.0)
    assert_log_mel_close(fallback, torchaudio_log_mel(wave))
    assert pooled.shape == (1, 1, 2)
