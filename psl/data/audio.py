"""Decoding audio files into the store's format: 16 kHz mono int16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio

SAMPLE_RATE = 16000


class AudioError(Exception):
    """A file that cannot be used; the message is the reason shown in ingest reports."""


def decode(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Reads any format libsndfile knows (wav, flac, ogg, mp3, ...), downmixes to mono and
    resamples to `sample_rate`. Returns float32 samples in [-1, 1]."""
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioError(f"unreadable: {error}") from None
    if data.size == 0:
        raise AudioError("empty: no samples")
    if not np.isfinite(data).all():
        raise AudioError("contains NaN or Inf samples")
    mono = data.mean(axis=1, dtype=np.float32)
    if rate != sample_rate:
        mono = torchaudio.functional.resample(torch.from_numpy(mono), rate, sample_rate).numpy()
    return mono


def to_int16(samples: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] to int16 (x 32768, rounded, saturated)."""
    return np.clip(np.rint(samples * 32768.0), -32768, 32767).astype(np.int16)
