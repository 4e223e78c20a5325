"""Shape and dtype contracts of the psl ops.

The fake (meta) kernels that let torch.compile trace through the ops are these
checks plus the output they describe; the pure-torch references use them too,
so both paths refuse the same inputs with the same messages as the C++ kernels.
"""

from __future__ import annotations

import torch

WAVE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.int16)
LOG_MEL_OUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
FRAME_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_log_mel(
    wave: torch.Tensor,
    lengths: torch.Tensor | None,
    sample_rate: int,
    n_fft: int,
    win_length: int,
    hop_length: int,
    n_mels: int,
    f_min: float,
    f_max: float | None,
    out_dtype: torch.dtype | None,
) -> tuple[tuple, torch.dtype]:
    """Returns the output shape and dtype of log_mel for these arguments."""
    torch._check(wave.dim() == 2, lambda: f"log_mel: wave must be [batch, samples], got shape {tuple(wave.shape)}")
    torch._check(
        wave.dtype in WAVE_DTYPES,
        lambda: f"log_mel: wave must be float32, float16, bfloat16 or int16, got {wave.dtype}",
    )
    torch._check(
        n_fft >= 8 and n_fft & (n_fft - 1) == 0, lambda: f"log_mel: n_fft must be a power of two >= 8, got {n_fft}"
    )
    torch._check(
        1 <= win_length <= n_fft, lambda: f"log_mel: win_length must be in [1, n_fft={n_fft}], got {win_length}"
    )
    torch._check(hop_length >= 1, lambda: f"log_mel: hop_length must be positive, got {hop_length}")
    torch._check(sample_rate >= 2, lambda: f"log_mel: sample_rate must be >= 2, got {sample_rate}")
    torch._check(n_mels >= 1, lambda: f"log_mel: n_mels must be positive, got {n_mels}")
    nyquist = float(sample_rate // 2)
    f_hi = nyquist if f_max is None else f_max
    torch._check(
        0.0 <= f_min < f_hi <= nyquist,
        lambda: f"log_mel: need 0 <= f_min < f_max <= sample_rate // 2 = {nyquist}, got f_min={f_min}, f_max={f_hi}",
    )
    dtype = torch.float32 if out_dtype is None else out_dtype
    torch._check(
        dtype in LOG_MEL_OUT_DTYPES, lambda: f"log_mel: out_dtype must be float32, bfloat16 or float16, got {dtype}"
    )
    if lengths is not None:
        torch._check(
            lengths.dim() == 1 and lengths.shape[0] == wave.shape[0],
            lambda: f"log_mel: lengths must be [batch={wave.shape[0]}], got shape {tuple(lengths.shape)}",
        )
        torch._check(lengths.dtype == torch.int64, lambda: f"log_mel: lengths must be int64, got {lengths.dtype}")
    return (wave.shape[0], n_mels, 1 + wave.shape[1] // hop_length), dtype


def check_chunk_pool(
    frames: torch.Tensor, starts: torch.Tensor, length: float, valid: torch.Tensor | None, mode: str
) -> tuple:
    """Returns the output shape of chunk_pool for these arguments."""
    torch._check(
        frames.dim() == 3,
        lambda: f"chunk_pool: frames must be [batch, frames, classes], got shape {tuple(frames.shape)}",
    )
    torch._check(
        frames.dtype in FRAME_DTYPES,
        lambda: f"chunk_pool: frames must be float32, float16 or bfloat16, got {frames.dtype}",
    )
    torch._check(
        starts.dim() == 2 and starts.shape[0] == frames.shape[0],
        lambda: f"chunk_pool: starts must be [batch={frames.shape[0]}, chunks], got shape {tuple(starts.shape)}",
    )
    torch._check(
        starts.dtype in (torch.float32, torch.float64),
        lambda: f"chunk_pool: starts must be float32 or float64 (frame units), got {starts.dtype}",
    )
    torch._check(length > 0, lambda: f"chunk_pool: length must be a positive number of frames, got {length}")
    if valid is not None:
        torch._check(
            valid.dim() == 1 and valid.shape[0] == frames.shape[0],
            lambda: f"chunk_pool: valid must be [batch={frames.shape[0]}], got shape {tuple(valid.shape)}",
        )
        torch._check(valid.dtype == torch.int64, lambda: f"chunk_pool: valid must be int64, got {valid.dtype}")
    torch._check(mode in ("mean", "max"), lambda: f"chunk_pool: mode must be 'mean' or 'max', got '{mode}'")
    return (frames.shape[0], starts.shape[1], frames.shape[2])
