"""The log-mel front end as a module, on top of the fused native op."""

from __future__ import annotations

import torch
from torch import nn

from psl import ops
from psl.ops.contract import LOG_MEL_DEFAULTS, LogMelSettings


class LogMel(nn.Module):
    """Waveforms ``[B, N]`` (float or int16) to log-mel energies ``[B, n_mels, T]`` in dB.

    Defaults are the paper's front end, ``psl.ops.contract.LOG_MEL_DEFAULTS``: 16 kHz,
    32 ms periodic Hann window (n_fft 512), 10 ms hop, 64 HTK mel bands from 0 to 8 kHz.
    It always computes in float32, inside autocast regions too; ``out_dtype`` only
    sets what the model reads (bfloat16 halves that traffic in AMP training).
    """

    def __init__(
        self,
        sample_rate: int = LOG_MEL_DEFAULTS.sample_rate,
        n_fft: int = LOG_MEL_DEFAULTS.n_fft,
        win_length: int | None = None,
        hop_length: int = LOG_MEL_DEFAULTS.hop_length,
        n_mels: int = LOG_MEL_DEFAULTS.n_mels,
        f_min: float = LOG_MEL_DEFAULTS.f_min,
        f_max: float | None = LOG_MEL_DEFAULTS.f_max,
        out_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        settings = LogMelSettings(sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max)
        # Plain attributes, not a `settings` one: MLflow keeps registered models as pickled
        # modules, and those pickled by earlier versions hold exactly these.
        self.sample_rate = settings.sample_rate
        self.n_fft = settings.n_fft
        self.win_length = settings.win_length
        self.hop_length = settings.hop_length
        self.n_mels = settings.n_mels
        self.f_min = settings.f_min
        self.f_max = settings.f_max
        self.out_dtype = out_dtype

    @property
    def settings(self) -> LogMelSettings:
        return LogMelSettings(
            self.sample_rate, self.n_fft, self.win_length, self.hop_length, self.n_mels, self.f_min, self.f_max
        )

    def num_frames(self, n_samples: int) -> int:
        """Frames produced for a clip of ``n_samples`` samples."""
        return 1 + n_samples // self.hop_length

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return ops.log_mel(wave, lengths, **self.settings.as_kwargs(), out_dtype=self.out_dtype)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value}" for name, value in self.settings.as_kwargs().items())
