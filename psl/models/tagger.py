"""The audio tagger: native log-mel front end, learned per-band normalisation, optional
SpecAugment, and the MobileNetV2 with its decision-mean head.

Every place where psl's recipe differs from the authors' release is a field of
`ModelConfig` (`input_norm`, `top_db`, `init`, SpecAugment's mask counts, `dropout`), so
that the paper's protocol (experiments/paper-audioset.yaml) is just a config."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from psl.frontend import LogMel
from psl.models.mobilenetv2 import CONV_INITS, MobileNetV2, TaggerOutput

INPUT_NORMS = ("batchnorm", "none")


@dataclass(frozen=True)
class ModelConfig:
    width: float = 1.0  # MobileNetV2 width multiplier
    dropout: float = 0.2
    n_mels: int = 64
    # SpecAugment in training: masks per clip and their largest widths (frames, mel bands).
    time_masks: int = 2
    time_mask_frames: int = 40
    freq_masks: int = 2
    freq_mask_bands: int = 8
    # "batchnorm": learned per-band normalisation of the dB values (psl); "none": the dB
    # values go straight into the network, as in the release.
    input_norm: str = "batchnorm"
    # Floor each clip's dB values at its maximum minus top_db (the release: 120); None: no floor.
    top_db: float | None = None
    init: str = "kaiming"  # convolution init: "kaiming" (normal, fan-out) or "xavier" (uniform; the release)

    def __post_init__(self) -> None:
        if self.width <= 0 or not 0 <= self.dropout < 1 or self.n_mels < 8:
            raise ValueError(f"need width > 0, 0 <= dropout < 1, n_mels >= 8; got {self}")
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {self.input_norm!r}")
        if self.top_db is not None and not self.top_db > 0:
            raise ValueError(f"top_db must be positive (or null for none), got {self.top_db}")
        if self.init not in CONV_INITS:
            raise ValueError(f"init must be one of {', '.join(CONV_INITS)}, got {self.init!r}")


class MelNorm(nn.Module):
    """Per-band batch normalisation of log-mel frames that ignores padded frames, so clips of
    different lengths in one batch do not bias the statistics with the -100 dB floor."""

    def __init__(self, n_mels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_mels, 1))
        self.bias = nn.Parameter(torch.zeros(n_mels, 1))
        self.register_buffer("running_mean", torch.zeros(n_mels, 1))
        self.register_buffer("running_var", torch.ones(n_mels, 1))
        self.momentum, self.eps = momentum, eps

    def forward(self, spec: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(spec.shape[-1], device=spec.device) < frames[:, None]).unsqueeze(1).to(spec.dtype)
        if self.training:
            count = mask.sum() * 1.0
            mean = (spec * mask).sum(dim=(0, 2)).unsqueeze(-1) / count
            var = (((spec - mean) * mask) ** 2).sum(dim=(0, 2)).unsqueeze(-1) / count
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * count / (count - 1).clamp_min(1), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return ((spec - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias) * mask


def spec_augment(spec: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Zeroes random time and frequency stripes of each clip (torch's RNG: reproducible)."""
    batch, n_mels, n_frames = spec.shape
    keep = torch.ones_like(spec)
    for count, width, size, axis in (
        (cfg.time_masks, cfg.time_mask_frames, n_frames, 2),
        (cfg.freq_masks, cfg.freq_mask_bands, n_mels, 1),
    ):
        for _ in range(count):
            w = torch.randint(0, width + 1, (batch, 1, 1), device=spec.device)
            start = (torch.rand(batch, 1, 1, device=spec.device) * (size - w + 1).clamp_min(1)).long()
            pos = torch.arange(size, device=spec.device).view(*(1, 1, size) if axis == 2 else (1, size, 1))
            keep = keep * ~((pos >= start) & (pos < start + w))
    return spec * keep


class AudioTagger(nn.Module):
    """Waveforms `[B, N]` (int16 or float, 16 kHz) with lengths to clip and frame probabilities."""

    def __init__(self, num_classes: int, cfg: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.frontend = LogMel(n_mels=cfg.n_mels)
        self.norm = MelNorm(cfg.n_mels) if cfg.input_norm == "batchnorm" else None
        self.backbone = MobileNetV2(num_classes, cfg.width, cfg.dropout, cfg.init)
        # oneDNN and cuDNN run these convolutions fastest with weights and activations in
        # NHWC: on 2 CPU cores a bf16 training step took 16% less time, inference 38% less.
        self.backbone.to(memory_format=torch.channels_last)

    @property
    def num_classes(self) -> int:
        return self.backbone.classifier.out_features

    def spectrogram(self, wave: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised log-mel `[B, n_mels, T]` and the valid frames per clip."""
        spec = self.frontend(wave, lengths)  # float32, also under autocast
        if lengths is None:
            frames = torch.full((wave.shape[0],), spec.shape[-1], device=spec.device)
        else:
            frames = (1 + lengths // self.frontend.hop_length).to(spec.device)
        if self.cfg.top_db is not None:
            # Per clip (padding sits at the -100 dB floor, never a clip's maximum). torchaudio's
            # AmplitudeToDB takes the maximum over a whole [B, F, T] batch instead, so the
            # release's output depends on the batch; scored one clip at a time they agree.
            spec = torch.maximum(spec, spec.amax(dim=(1, 2), keepdim=True) - self.cfg.top_db)
        return (spec if self.norm is None else self.norm(spec, frames)), frames

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> TaggerOutput:
        spec, frames = self.spectrogram(wave, lengths)
        if self.training:
            spec = spec_augment(spec, self.cfg)
        return self.backbone(spec.unsqueeze(1).contiguous(memory_format=torch.channels_last), frames)
