"""Pure-torch implementations of the psl ops.

They define what the native kernels compute and run wherever the compiled
extension is missing. They favour clarity over speed. The arguments' shapes,
dtypes and ranges are checked once, by the C++ kernels; these functions refuse
only what would otherwise give a quietly wrong answer (a clip length outside the
wave, NaN or Inf in a clip or a chunk start, an unknown pooling mode), with the
kernels' messages.
"""

from __future__ import annotations

import torch
import torchaudio

from psl.ops.contract import LOG_MEL_DEFAULTS, LogMelSettings

LOG_MEL_FLOOR_DB = -100.0


def log_mel(
    wave: torch.Tensor,
    lengths: torch.Tensor | None = None,
    *,
    sample_rate: int = LOG_MEL_DEFAULTS.sample_rate,
    n_fft: int = LOG_MEL_DEFAULTS.n_fft,
    win_length: int | None = None,
    hop_length: int = LOG_MEL_DEFAULTS.hop_length,
    n_mels: int = LOG_MEL_DEFAULTS.n_mels,
    f_min: float = LOG_MEL_DEFAULTS.f_min,
    f_max: float | None = LOG_MEL_DEFAULTS.f_max,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """torch.stft + HTK mel filterbank + dB, one group of equal-length clips at a time."""
    cfg = LogMelSettings(sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max)
    x = wave.float() / 32768.0 if wave.dtype == torch.int16 else wave.float()
    sizes = torch.full((x.shape[0],), x.shape[1]) if lengths is None else lengths.cpu()
    for b, size in enumerate(sizes.tolist()):
        if not cfg.n_fft // 2 + 1 <= size <= x.shape[1]:
            raise RuntimeError(
                f"log_mel: lengths[{b}] = {size} is outside [{cfg.n_fft // 2 + 1}, {x.shape[1]}]: a clip needs at "
                "least n_fft // 2 + 1 samples for reflect padding and cannot be longer than wave"
            )
        if not torch.isfinite(x[b, :size]).all():
            raise RuntimeError(f"log_mel: wave[{b}] contains NaN or Inf")
    fbank = torchaudio.functional.melscale_fbanks(
        cfg.n_fft // 2 + 1,
        cfg.f_min,
        float(cfg.sample_rate // 2) if cfg.f_max is None else cfg.f_max,
        cfg.n_mels,
        cfg.sample_rate,
        norm=None,
        mel_scale="htk",
    ).to(x.device)
    window = torch.hann_window(cfg.win_length, periodic=True, device=x.device)
    shape = (x.shape[0], cfg.n_mels, 1 + x.shape[1] // cfg.hop_length)
    out = torch.full(shape, LOG_MEL_FLOOR_DB, dtype=torch.float32, device=x.device)
    for size in sizes.unique().tolist():
        rows = (sizes == size).nonzero().flatten().to(x.device)
        spec = torch.stft(
            x[rows, :size],
            cfg.n_fft,
            cfg.hop_length,
            cfg.win_length,
            window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(power.transpose(1, 2), fbank).transpose(1, 2)
        out[rows, :, : mel.shape[-1]] = 10.0 * torch.log10(mel.clamp_min(1e-10))
    return out.to(torch.float32 if out_dtype is None else out_dtype)


def chunk_overlap(starts: torch.Tensor, length: float, valid: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Overlap [B, K, T] of frame t = [t, t+1) with chunk [s, s+length) clipped to [0, valid)."""
    lo = starts.clamp_min(0.0).unsqueeze(-1)
    hi = torch.minimum(starts + length, valid.to(starts.dtype).unsqueeze(-1)).unsqueeze(-1)
    t = torch.arange(n_frames, device=starts.device, dtype=starts.dtype)
    return (torch.minimum(t + 1, hi) - torch.maximum(t, lo)).clamp_min(0.0)


def chunk_pool(
    frames: torch.Tensor,
    starts: torch.Tensor,
    length: float,
    valid: torch.Tensor | None = None,
    mode: str = "mean",
) -> torch.Tensor:
    """Overlap-weighted mean (or max over overlapping frames) of frames per chunk."""
    if mode not in ("mean", "max"):
        raise RuntimeError(f"chunk_pool: mode must be 'mean' or 'max', got '{mode}'")
    if not torch.isfinite(starts).all():
        b, k = (~torch.isfinite(starts)).nonzero()[0].tolist()
        raise RuntimeError(f"chunk_pool: starts[{b}, {k}] is {starts[b, k].item()}")
    batch, n_frames, _ = frames.shape
    if valid is None:
        valid = torch.full((batch,), n_frames, device=frames.device)
    valid = valid.clamp(0, n_frames)
    weight = chunk_overlap(starts.double(), length, valid, n_frames)
    values = frames.float()
    if mode == "max":
        covered = (weight > 0).unsqueeze(-1)
        masked = values.unsqueeze(1).masked_fill(~covered, float("-inf"))
        pooled = masked.amax(dim=2)
        return torch.where(covered.any(dim=2), pooled, torch.zeros_like(pooled))
    total = weight.sum(dim=-1, keepdim=True)
    pooled = torch.matmul(weight.float(), values)
    return torch.where(total > 0, pooled / total.float().clamp_min(1e-30), torch.zeros_like(pooled))
