"""`psl bench ops`: the native ops against what they replace, same device, same threads, same run."""

from __future__ import annotations

import torch
import torchaudio

from psl import ops
from psl.bench.timing import Comparison, interleaved_medians
from psl.ops import LOG_MEL_DEFAULTS, reference

# Teacher output frames of a 10-s clip (MobileNetV2 keeps 1 of every 32 log-mel frames)
# and AudioSet's classes: the label store's shape.
LABEL_FRAMES, LABEL_CLASSES = 32, 527


def _torchaudio_log_mel(device: torch.device):
    mel = torchaudio.transforms.MelSpectrogram(**LOG_MEL_DEFAULTS.as_kwargs())  # the same names as torchaudio's
    to_db = torchaudio.transforms.AmplitudeToDB("power", top_db=None)
    mel, to_db = mel.to(device), to_db.to(device)

    def run(wave: torch.Tensor) -> torch.Tensor:
        x = wave.float() / 32768.0 if wave.dtype == torch.int16 else wave
        return to_db(mel(x))

    return run


def bench_log_mel(device: torch.device, batch: int, seconds: float, repeats: int) -> list[Comparison]:
    n = int(seconds * LOG_MEL_DEFAULTS.sample_rate)
    noise = torch.randn(batch, n, device=device) * 0.1
    inputs = {"float32": noise, "int16": (noise * 32768).clamp(-32768, 32767).to(torch.int16)}
    baseline = _torchaudio_log_mel(device)
    rows = []
    with torch.inference_mode():
        for name, wave in inputs.items():
            t = interleaved_medians(
                {"psl": lambda w=wave: ops.log_mel(w), "torchaudio": lambda w=wave: baseline(w)}, device, repeats
            )
            rows.append(
                Comparison(
                    f"log_mel {name} {batch}x{seconds:g}s",
                    device.type,
                    "clips/s",
                    batch / t["psl"],
                    "torchaudio MelSpectrogram+AmplitudeToDB",
                    batch / t["torchaudio"],
                )
            )
    return rows


def bench_chunk_pool(device: torch.device, batch: int, repeats: int) -> list[Comparison]:
    frames = torch.rand(batch, LABEL_FRAMES, LABEL_CLASSES, device=device).half()
    # Random 2-s crops of 10-s clips, four per clip, in teacher frames.
    length = LABEL_FRAMES * 0.2
    starts = torch.rand(batch, 4, device=device) * (LABEL_FRAMES - length)
    with torch.inference_mode():
        t = interleaved_medians(
            {
                "psl": lambda: ops.chunk_pool(frames, starts, length),
                "reference": lambda: reference.chunk_pool(frames, starts, length),
            },
            device,
            repeats,
        )
    return [
        Comparison(
            f"chunk_pool {batch}x{LABEL_FRAMES}x{LABEL_CLASSES} fp16",
            device.type,
            "clips/s",
            batch / t["psl"],
            "pure-torch reference",
            batch / t["reference"],
        )
    ]


def run(devices: list[torch.device], batch: int, seconds: float, repeats: int) -> list[Comparison]:
    rows = []
    for device in devices:
        rows += bench_log_mel(device, batch, seconds, repeats)
        rows += bench_chunk_pool(device, batch, repeats)
    return rows
