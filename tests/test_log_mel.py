"""psl.ops.log_mel (native CPU kernel) against torchaudio on fresh random inputs."""

import math

import pytest
import torch

from psl import ops
from psl.frontend import LogMel
from psl.ops.contract import LOG_MEL_DEFAULTS, LogMelSettings
from references import assert_log_mel_close, torchaudio_log_mel

pytestmark = pytest.mark.skipif(not ops.native_available(), reason="psl._C is not built")


def noise(rng, batch, n, scale=0.3):
    return torch.randn(batch, n, generator=rng) * scale


@pytest.mark.parametrize("batch, n", [(1, 16000), (3, 16037), (8, 4001)])
def test_white_noise_matches_torchaudio(rng, batch, n):
    wave = noise(rng, batch, n)
    assert_log_mel_close(ops.log_mel(wave), torchaudio_log_mel(wave))


def test_ten_second_clips_match_torchaudio(rng):
    wave = noise(rng, 2, 160000)
    out = ops.log_mel(wave)
    assert out.shape == (2, 64, 1001)
    assert_log_mel_close(out, torchaudio_log_mel(wave))


def test_pure_tone_and_its_peak_band(rng):
    freq = float(torch.randint(200, 7000, (1,), generator=rng))
    t = torch.arange(24000) / 16000.0
    wave = (0.5 * torch.sin(2 * math.pi * freq * t)).unsqueeze(0)
    out, expected = ops.log_mel(wave), torchaudio_log_mel(wave)
    assert_log_mel_close(out, expected)
    assert out[0, :, 50].argmax() == expected[0, :, 50].argmax()


def test_shortest_allowed_clip(rng):
    wave = noise(rng, 2, 512 // 2 + 1)
    out = ops.log_mel(wave)
    assert out.shape == (2, 64, 2)
    assert_log_mel_close(out, torchaudio_log_mel(wave))


def test_silence_is_the_floor():
    out = ops.log_mel(torch.zeros(2, 8000))
    assert torch.equal(out, torch.full_like(out, -100.0))
    assert torch.equal(out, torchaudio_log_mel(torch.zeros(2, 8000)).float())


def test_int16_input_is_scaled_by_one_over_32768(rng):
    wave = (noise(rng, 3, 12345, scale=4000.0)).clamp(-32768, 32767).to(torch.int16)
    assert_log_mel_close(ops.log_mel(wave), torchaudio_log_mel(wave))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_is_computed_in_float32(rng, dtype):
    wave = noise(rng, 2, 9999).to(dtype)
    # The reference sees the same (rounded) sample values, in float64.
    assert_log_mel_close(ops.log_mel(wave), torchaudio_log_mel(wave))


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_output_is_the_rounded_float32_result(rng, out_dtype):
    wave = noise(rng, 2, 16000)
    full = ops.log_mel(wave)
    reduced = ops.log_mel(wave, out_dtype=out_dtype)
    assert reduced.dtype == out_dtype
    torch.testing.assert_close(reduced, full.to(out_dtype), rtol=0, atol=0)


@pytest.mark.parametrize(
    "cfg",
    [
        dict(n_mels=128),
        dict(hop_length=320),
        dict(f_max=7000.0),
        dict(sample_rate=32000, n_fft=1024, win_length=1024, hop_length=320),
        dict(n_fft=512, win_length=400, f_min=50.0),
        dict(n_fft=256, win_length=256, hop_length=97, n_mels=40),
    ],
    ids=["n_mels128", "hop320", "fmax7000", "sr32000", "win400_fmin50", "nfft256_hop97"],
)
@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
def test_non_default_settings(rng, cfg):
    wave = noise(rng, 2, 20011)
    assert_log_mel_close(ops.log_mel(wave, **cfg), torchaudio_log_mel(wave, **cfg))


def test_each_clip_with_lengths_equals_the_clip_alone(rng):
    n = 16000
    lengths = torch.tensor([n, 257, 9000, 12345])
    wave = noise(rng, 4, n)
    out = ops.log_mel(wave, lengths)
    for b, size in enumerate(lengths.tolist()):
        frames = 1 + size // 160
        alone = ops.log_mel(wave[b : b + 1, :size])[0]
        torch.testing.assert_close(out[b, :, :frames], alone, rtol=0, atol=1e-5)
        assert (out[b, :, frames:] == -100.0).all()
        assert_log_mel_close(out[b : b + 1, :, :frames], torchaudio_log_mel(wave[b : b + 1, :size]))


def test_lengths_ignore_garbage_past_the_end(rng):
    wave = noise(rng, 2, 8000)
    wave[0, 5000:] = float("nan")
    out = ops.log_mel(wave, torch.tensor([5000, 8000]))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ops.log_mel(torch.zeros(16000)), r"wave must be \[batch, samples\]"),
        (lambda: ops.log_mel(torch.zeros(1, 16000, dtype=torch.float64)), "float32, float16, bfloat16 or int16"),
        (lambda: ops.log_mel(torch.zeros(1, 16000, dtype=torch.int32)), "float32, float16, bfloat16 or int16"),
        (lambda: ops.log_mel(torch.zeros(2, 256)), "needs at least 257"),
        (lambda: ops.log_mel(torch.zeros(2, 800), torch.tensor([800, 100])), r"lengths\[1\] = 100"),
        (lambda: ops.log_mel(torch.zeros(2, 800), torch.tensor([801, 800])), r"lengths\[0\] = 801"),
        (lambda: ops.log_mel(torch.zeros(2, 800), torch.tensor([800])), r"lengths must be \[batch=2\]"),
        (lambda: ops.log_mel(torch.zeros(1, 800), torch.tensor([800.0])), "lengths must be int64"),
        (lambda: ops.log_mel(torch.zeros(1, 800), n_fft=500), "power of two"),
        (lambda: ops.log_mel(torch.zeros(1, 800), win_length=1024), "win_length"),
        (lambda: ops.log_mel(torch.zeros(1, 800), f_max=9000.0), "f_max"),
        (lambda: ops.log_mel(torch.zeros(1, 800), out_dtype=torch.float64), "out_dtype"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(call, message):
    with pytest.raises(RuntimeError, match=message):
        call()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_samples_name_the_clip(rng, bad):
    wave = noise(rng, 4, 4000)
    wave[2, 1234] = bad
    with pytest.raises(RuntimeError, match=r"wave\[2\] contains NaN or Inf"):
        ops.log_mel(wave)


def test_logmel_module_wraps_the_op(rng):
    module = LogMel(n_mels=40, hop_length=320, out_dtype=torch.bfloat16)
    wave = noise(rng, 2, 16000)
    out = module(wave)
    assert out.shape == (2, 40, module.num_frames(16000))
    assert torch.equal(out, ops.log_mel(wave, n_mels=40, hop_length=320, out_dtype=torch.bfloat16))
    assert "n_mels=40" in repr(module)


def test_the_defaults_are_the_papers_front_end_and_every_layer_uses_them(rng):
    assert LOG_MEL_DEFAULTS == LogMelSettings(
        sample_rate=16000, n_fft=512, win_length=512, hop_length=160, n_mels=64, f_min=0.0, f_max=None
    )
    assert LogMel().settings == LOG_MEL_DEFAULTS
    assert LogMel(n_fft=1024).win_length == 1024, "win_length defaults to n_fft, as in torchaudio"
    wave = noise(rng, 2, 4000)
    out = ops.log_mel(wave)
    assert torch.equal(out, LogMel()(wave))
    assert torch.equal(out, torch.ops.psl.log_mel.default(wave, **LOG_MEL_DEFAULTS.as_kwargs()))
