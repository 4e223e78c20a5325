"""PyTorch datasets over a clip store: whole clips, a fixed chunk grid, and random crops.

Items are dicts with the int16 waveform (the front end converts), its length, the clip's
weak label, and where the audio came from (clip index, start in samples), so that the
student stage can look up pseudo labels for exactly that span. `pad_collate` batches
them with zero padding and lengths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from psl.data.store import ClipStore


def _item(store: ClipStore, clip: int, start: int, end: int, labels: np.ndarray) -> dict:
    wave = store.read(clip, start, end)
    return dict(
        wave=torch.from_numpy(wave),
        length=end - start,
        label=torch.from_numpy(labels[clip]),
        clip=clip,
        start=start,
    )


class ClipDataset(Dataset):
    """Every clip, whole."""

    def __init__(self, store: ClipStore) -> None:
        self.store = store
        self.labels = store.label_matrix()

    def __len__(self) -> int:
        return len(self.store)

    def clip_labels(self) -> list[np.ndarray]:
        return self.store.labels

    def __getitem__(self, i: int) -> dict:
        return _item(self.store, i, 0, int(self.store.num_samples[i]), self.labels)


@dataclass(frozen=True)
class Chunk:
    clip: int
    start: int  # samples
    end: int


def chunk_grid(num_samples: int, length: int, hop: int, min_length: int) -> list[tuple[int, int]]:
    """[start, end) of the chunks of a clip: length `length` every `hop` samples, and a
    last partial chunk for the remainder the full ones miss, kept when it has at least
    `min_length` samples. A clip shorter than `length` is one chunk."""
    if num_samples <= length:
        return [(0, num_samples)]
    spans = [(s, s + length) for s in range(0, num_samples - length + 1, hop)]
    covered = spans[-1][1]
    if covered < num_samples:
        start = spans[-1][0] + hop
        if num_samples - start >= min_length:
            spans.append((start, num_samples))
    return spans


class ChunkDataset(Dataset):
    """A fixed grid of chunks (length L, hop H, in seconds) over every clip; each chunk is
    an item carrying its clip's weak label and its true length (the last one may be short)."""

    def __init__(self, store: ClipStore, length_s: float, hop_s: float, min_length_s: float = 0.1) -> None:
        if length_s <= 0 or hop_s <= 0:
            raise ValueError(f"chunk length and hop must be positive, got {length_s}, {hop_s}")
        self.store = store
        self.labels = store.label_matrix()
        sr = store.sample_rate
        length, hop, min_length = round(length_s * sr), round(hop_s * sr), round(min_length_s * sr)
        self.chunks = [
            Chunk(i, s, e)
            for i, n in enumerate(store.num_samples)
            for s, e in chunk_grid(int(n), length, hop, min_length)
        ]

    def __len__(self) -> int:
        return len(self.chunks)

    def clip_labels(self) -> list[np.ndarray]:
        return [self.store.labels[c.clip] for c in self.chunks]

    def __getitem__(self, i: int) -> dict:
        c = self.chunks[i]
        return _item(self.store, c.clip, c.start, c.end, self.labels)


class RandomCropDataset(Dataset):
    """One crop of length L per clip and epoch, at an offset drawn uniformly (to the
    sample) and afresh each epoch; a clip shorter than L is taken whole. The offsets
    depend only on (seed, epoch, clip), so they are the same with any number of workers."""

    def __init__(self, store: ClipStore, length_s: float, seed: int = 0) -> None:
        if length_s <= 0:
            raise ValueError(f"crop length must be positive, got {length_s}")
        self.store = store
        self.labels = store.label_matrix()
        self.length = round(length_s * store.sample_rate)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.store)

    def clip_labels(self) -> list[np.ndarray]:
        return self.store.labels

    def crop(self, i: int) -> tuple[int, int]:
        n = int(self.store.num_samples[i])
        if n <= self.length:
            return 0, n
        rng = np.random.default_rng((self.seed, self.epoch, i))
        start = int(rng.integers(0, n - self.length + 1))
        return start, start + self.length

    def __getitem__(self, i: int) -> dict:
        start, end = self.crop(i)
        return _item(self.store, i, start, end, self.labels)


def pad_waves(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms stacked into [B, longest] zero padded, and their lengths [B] int64."""
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.int64)
    wave = torch.empty(len(waves), int(lengths.max()), dtype=torch.from_numpy(waves[0][:0]).dtype)
    if get_worker_info() is not None:
        # Built in shared memory, the batch crosses to the main process without a copy.
        wave.share_memory_()
    # Filled through numpy: a tensor copy per row starts torch's thread pool each time, which
    # cost 20x more on a busy 2-core machine (23 ms vs 1.2 ms for 32 10-s clips).
    rows = wave.numpy()
    for row, samples in enumerate(waves):
        rows[row, : len(samples)] = samples
        rows[row, len(samples) :] = 0
    return wave, lengths


def pad_collate(items: list[dict]) -> dict:
    """Stacks items into `wave` [B, max length] int16 (zero padded), `lengths` [B] int64,
    `label` [B, C], `clip` and `start` [B] int64, and any further tensor field as it is."""
    wave, lengths = pad_waves([it["wave"].numpy()[: it["length"]] for it in items])
    batch = dict(
        wave=wave,
        lengths=lengths,
        label=torch.stack([it["label"] for it in items]),
        clip=torch.tensor([it["clip"] for it in items], dtype=torch.int64),
        start=torch.tensor([it["start"] for it in items], dtype=torch.int64),
    )
    # Targets that wrappers add (e.g. pseudo labels) are stacked as they are.
    for key in items[0].keys() - batch.keys() - {"length"}:
        batch[key] = torch.stack([it[key] for it in items])
    return batch
