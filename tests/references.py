"""Independent references the native ops are checked against."""

from __future__ import annotations

import math

import numpy as np
import torch
import torchaudio

from psl.ops.contract import LogMelSettings


def torchaudio_log_mel(wave: torch.Tensor, **cfg) -> torch.Tensor:
    """torchaudio MelSpectrogram + AmplitudeToDB in float64, on the float value of each sample.

    The transform is built with float64 as the default dtype, so its window and
    mel filterbank are computed in float64 too (built in float32, torchaudio's
    filterbank weights are off by up to ~1e-5 near the triangle corners).
    """
    x = wave.double() / 32768.0 if wave.dtype == torch.int16 else wave.double()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        mel = _mel_spectrogram(cfg)
    finally:
        torch.set_default_dtype(default)
    return torchaudio.transforms.AmplitudeToDB("power", top_db=None)(mel(x))


def _mel_spectrogram(cfg: dict) -> torchaudio.transforms.MelSpectrogram:
    settings = LogMelSettings(**cfg)  # psl's defaults for what cfg leaves out (pinned in test_log_mel)
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=settings.sample_rate,
        n_fft=settings.n_fft,
        win_length=settings.win_length,
        hop_length=settings.hop_length,
        f_min=settings.f_min,
        f_max=settings.f_max,
        n_mels=settings.n_mels,
        power=2.0,
        center=True,
        pad_mode="reflect",
        norm=None,
        mel_scale="htk",
    )


def assert_log_mel_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """DESIGN.md section 4 against a float64 reference: power within rtol 1e-4 and dB within
    1e-3 wherever the reference is within 60 dB of its clip's maximum, and dB within 1e-2
    down to 80 dB below it.

    The rounding error of a float32 FFT scales with the frame's loudest bin, so its
    relative error grows as a band gets quieter: about 3e-4 (1.2e-3 dB) at 80 dB below the
    maximum, for this kernel and for torchaudio's own float32 path alike.
    """
    assert actual.shape == expected.shape
    a = actual.double()
    below_max = expected.amax(dim=(1, 2), keepdim=True) - expected
    power_a, power_e = 10.0 ** (a / 10.0), 10.0 ** (expected / 10.0)
    near = below_max <= 60.0
    rel = ((power_a - power_e).abs() / power_e)[near]
    assert rel.max() <= 1e-4, f"power relative error {rel.max().item():.3g} > 1e-4"
    db_err = (a - expected).abs()
    assert db_err[near].max() <= 1e-3, f"dB error {db_err[near].max().item():.3g} > 1e-3"
    far = below_max <= 80.0
    assert db_err[far].max() <= 1e-2, f"dB error {db_err[far].max().item():.3g} > 1e-2"


def chunk_pool_float64(frames, starts, length, valid=None, mode="mean") -> np.ndarray:
    """Loop-by-loop float64 chunk pooling, written from the definition in DESIGN.md section 4."""
    frames = frames.double().numpy()
    starts = starts.double().numpy()
    batch, n_frames, n_classes = frames.shape
    out = np.zeros((batch, starts.shape[1], n_classes))
    for b in range(batch):
        end = n_frames if valid is None else min(max(int(valid[b]), 0), n_frames)
        for k, start in enumerate(starts[b]):
            lo, hi = max(start, 0.0), min(start + length, end)
            weights = {t: min(t + 1, hi) - max(t, lo) for t in range(n_frames)}
            weights = {t: w for t, w in weights.items() if w > 0}
            if not weights:
                continue
            if mode == "max":
                out[b, k] = np.max([frames[b, t] for t in weights], axis=0)
            else:
                total = math.fsum(weights.values())
                out[b, k] = sum(w * frames[b, t] for t, w in weights.items()) / total
    return out
