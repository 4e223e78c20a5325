"""Samplers: AudioSet-style class-balanced sampling, and sharding of any index order
across distributed ranks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from psl.errors import DataError


class ClassBalancedSampler(Sampler[int]):
    """Each draw takes the next class of a shuffled round over all classes that have
    items, then a random item labelled with that class (as in the AudioSet recipes of
    PANNs and the PSL paper), so rare classes are seen as often as common ones.

    The order depends only on (seed, epoch). With `world_size` > 1 each rank takes every
    `world_size`-th draw of the same sequence, so the ranks see disjoint draws.
    """

    def __init__(
        self,
        item_labels: Sequence[np.ndarray],
        num_classes: int,
        num_samples: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, {world_size})")
        members: list[list[int]] = [[] for _ in range(num_classes)]
        for item, labels in enumerate(item_labels):
            for c in labels:
                members[int(c)].append(item)
        self.members = [np.array(m, dtype=np.int64) for m in members]
        self.classes = np.array([c for c, m in enumerate(self.members) if len(m)], dtype=np.int64)
        if not len(self.classes):
            raise DataError("no item has a label: class-balanced sampling is impossible")
        self.num_samples = len(item_labels) if num_samples is None else num_samples
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world_size))

    def draws(self) -> np.ndarray:
        """The whole epoch's sequence of item indices (all ranks)."""
        rng = np.random.default_rng((self.seed, self.epoch))
        rounds = -(-self.num_samples // len(self.classes))
        classes = np.concatenate([rng.permutation(self.classes) for _ in range(rounds)])[: self.num_samples]
        return np.array([self.members[c][rng.integers(len(self.members[c]))] for c in classes], dtype=np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.draws()[self.rank :: self.world_size].tolist())


class ShardedShuffleSampler(Sampler[int]):
    """A seeded permutation per epoch, split across ranks (every `world_size`-th index),
    padded by wrapping around so every rank gets the same number of items."""

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, {world_size})")
        self.size, self.seed, self.shuffle, self.rank, self.world_size = size, seed, shuffle, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.size // self.world_size)

    def __iter__(self) -> Iterator[int]:
        order = (
            np.random.default_rng((self.seed, self.epoch)).permutation(self.size)
            if self.shuffle
            else np.arange(self.size)
        )
        total = len(self) * self.world_size
        order = np.resize(order, total)  # wrap around to an equal share per rank
        return iter(order[self.rank :: self.world_size].tolist())
