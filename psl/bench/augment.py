"""`psl bench augment`: psl's SpecAugment (`psl.models.tagger.spec_augment`) against the same
masks drawn with torchaudio's `mask_along_axis_iid`, on training batches of log-mels: the
measurement behind keeping psl's own masking."""

from __future__ import annotations

from functools import partial

import torch

from psl.bench.timing import Comparison, interleaved_medians
from psl.frontend import LogMel
from psl.models.tagger import ModelConfig, spec_augment


def torchaudio_spec_augment(spec: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """The masks `spec_augment` draws (count and largest width per axis, per clip), drawn by
    torchaudio; its widths run from 0 to one less than the largest."""
    import torchaudio.functional as F

    masked = spec.unsqueeze(1)  # torchaudio masks [batch, channel, freq, time]
    for _ in range(cfg.time_masks):
        masked = F.mask_along_axis_iid(masked, cfg.time_mask_frames, 0.0, axis=3)
    for _ in range(cfg.freq_masks):
        masked = F.mask_along_axis_iid(masked, cfg.freq_mask_bands, 0.0, axis=2)
    return masked.squeeze(1)


def bench_augment(batch: int, seconds: list[float], repeats: int, seed: int = 0) -> list[Comparison]:
    cfg = ModelConfig()
    frontend = LogMel(n_mels=cfg.n_mels)  # as the tagger builds it: its frames are what is masked
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for duration in seconds:
        frames = frontend.num_frames(int(duration * frontend.sample_rate))
        spec = torch.randn(batch, cfg.n_mels, frames, generator=generator)
        times = interleaved_medians(
            {"psl": partial(spec_augment, spec, cfg), "torchaudio": partial(torchaudio_spec_augment, spec, cfg)},
            torch.device("cpu"),
            repeats,
        )
        what = f"SpecAugment, {batch} x {duration:g} s ({cfg.n_mels} x {frames})"
        rows.append(Comparison(what, "cpu", "batches/s", 1 / times["psl"], "torchaudio", 1 / times["torchaudio"]))
    return rows
