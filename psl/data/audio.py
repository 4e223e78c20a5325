"""Decoding audio files into the store's format: 16 kHz mono int16."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile
import torch
import torchaudio

from psl.data.store import SAMPLE_RATE
from psl.errors import AudioError
from psl.files import write_atomic

# Rates outside this range are damaged headers rather than recordings (384 kHz is the highest
# rate audio hardware records at); the bound also caps the resampling filter's size.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384000
# torchaudio's resampler builds a dense [up, down] sinc kernel: a few MB for the usual rates
# (44.1 kHz is 160 x 441) but gigabytes for a rate that shares no factor with 16 kHz (11127 Hz
# is 16000 x 11127). Beyond this many kernel entries a polyphase filter does the same job.
MAX_DENSE_KERNEL = 1 << 20
BLOCK_FRAMES = 1 << 16  # read in blocks, so that many channels never sit in memory at once


def decode(path: Path, sample_rate: int = SAMPLE_RATE, max_seconds: float = math.inf) -> np.ndarray:
    """Reads any format libsndfile knows (wav, flac, ogg, mp3, ...), downmixes to mono and
    resamples to `sample_rate`. Returns float32 samples in [-1, 1]. The header is checked before
    any sample is read, so a file longer than `max_seconds` costs nothing."""
    try:
        with soundfile.SoundFile(str(path)) as f:
            rate = f.samplerate
            if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
                raise AudioError(f"unsupported sample rate: {rate} Hz (expected {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE})")
            seconds = f.frames / rate
            if seconds > max_seconds:
                raise AudioError(f"too long: {seconds:.1f} s > {max_seconds:g} s")
            blocks = []
            for block in f.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    raise AudioError("contains NaN or Inf samples")
                # Float files may hold any finite value; beyond full scale it is clipping anyway,
                # and clipping first keeps the downmix and the resampler from overflowing.
                blocks.append(np.clip(block, -1.0, 1.0).mean(axis=1, dtype=np.float32))
    except AudioError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as error:
        raise AudioError(f"unreadable: {error}") from None
    mono = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if mono.size == 0:
        raise AudioError("empty: no samples")
    return resample(mono, rate, sample_rate)


def resample(samples: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """float32 samples at `rate` to `sample_rate`."""
    if rate == sample_rate:
        return samples
    common = math.gcd(rate, sample_rate)
    if (rate // common) * (sample_rate // common) <= MAX_DENSE_KERNEL:
        return torchaudio.functional.resample(torch.from_numpy(samples), rate, sample_rate).numpy()
    return scipy.signal.resample_poly(samples, sample_rate // common, rate // common).astype(np.float32)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] to int16 (x 32768, rounded, saturated)."""
    return np.clip(np.rint(samples * 32768.0), -32768, 32767).astype(np.int16)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Writes a WAV file atomically. It is encoded in memory and written by Python, because
    libsndfile reports a full disk as "System error." with no errno; this way it is an OSError
    (ENOSPC) that names the file."""
    encoded = io.BytesIO()
    soundfile.write(encoded, samples, sample_rate, subtype=subtype, format="WAV")
    write_atomic(path, encoded.getbuffer())
