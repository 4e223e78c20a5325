"""The log-mel front end as a module, on top of the fused native op."""

from __future__ import annotations

import torch
from torch import nn

from psl import ops


class LogMel(nn.Module):
    """Waveforms ``[B, N]`` (float or int16) to log-mel energies ``[B, n_mels, T]`` in dB.

    Defaults are the paper's front end: 16 kHz, 32 ms periodic Hann window
    (n_fft 512), 10 ms hop, 64 HTK mel bands from 0 to 8 kHz. It always computes
    in float32, inside autocast regions too; ``out_dtype`` only sets what the
    model reads (bfloat16 halves that traffic in AMP training).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int | None = None,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        out_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.win_length = n_fft if win_length is None else win_length
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.f_min = f_min
        self.f_max = f_max
        self.out_dtype = out_dtype

    def num_frames(self, n_samples: int) -> int:
        """Frames produced for a clip of ``n_samples`` samples."""
        return 1 + n_samples // self.hop_length

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return ops.log_mel(
            wave,
            lengths,
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            win_length=self.win_length,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            f_min=self.f_min,
            f_max=self.f_max,
            out_dtype=self.out_dtype,
        )

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, win_length={self.win_length}, "
            f"hop_length={self.hop_length}, n_mels={self.n_mels}, f_min={self.f_min}, f_max={self.f_max}"
        )
