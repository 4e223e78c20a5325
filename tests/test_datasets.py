"""Datasets (clips, chunk grids, random crops), the padding collate and the samplers."""

from collections import Counter

import numpy as np
import pytest
import torch

from psl.data.classes import ClassList
from psl.data.datasets import ChunkDataset, ClipDataset, RandomCropDataset, chunk_grid, pad_collate
from psl.data.samplers import ClassBalancedSampler, ShardedShuffleSampler
from psl.data.store import StoreWriter

SR = 16000


@pytest.fixture
def store(tmp_path):
    """Clips of 10.5 s, 3 s, 10 s and 0.7 s with known samples (sample value = position % 30000)."""
    writer = StoreWriter(tmp_path / "s", ClassList(("x", "y", "z"), ("X", "Y", "Z")))
    for i, seconds in enumerate([10.5, 3.0, 10.0, 0.7]):
        n = int(seconds * SR)
        writer.append(f"c{i}", (np.arange(n) % 30000).astype(np.int16), [i % 3], "x")
    return writer.finish()


def test_chunk_grid_keeps_the_partial_last_chunk():
    L, H = 2 * SR, 2 * SR
    spans = chunk_grid(int(10.5 * SR), L, H, min_length=SR // 10)
    assert spans == [(s, s + L) for s in range(0, 10 * SR, H)] + [(10 * SR, int(10.5 * SR))]
    assert chunk_grid(10 * SR, L, H, SR // 10) == [(s, s + L) for s in range(0, 10 * SR, H)]
    # Overlapping hops: full chunks every second, then the 0.5-s remainder past the last one.
    spans = chunk_grid(int(10.5 * SR), L, SR, SR // 10)
    assert spans[-2] == (8 * SR, 10 * SR) and spans[-1] == (9 * SR, int(10.5 * SR))
    # A remainder shorter than the minimum is dropped; a clip shorter than L is one chunk.
    assert chunk_grid(10 * SR + 100, L, H, SR // 10)[-1] == (8 * SR, 10 * SR)
    assert chunk_grid(SR, L, H, SR // 10) == [(0, SR)]


def test_chunk_dataset_items_are_the_chunks(store):
    ds = ChunkDataset(store, length_s=2.0, hop_s=2.0)
    assert len(ds) == 6 + 2 + 5 + 1
    item = ds[5]  # the partial last chunk of clip 0
    assert item["clip"] == 0 and item["start"] == 10 * SR and item["length"] == SR // 2
    assert torch.equal(item["wave"], torch.from_numpy((np.arange(10 * SR, int(10.5 * SR)) % 30000).astype(np.int16)))
    assert item["label"].tolist() == [1.0, 0.0, 0.0]
    assert ds[8]["clip"] == 2 and ds[8]["label"].tolist() == [0.0, 0.0, 1.0]


def test_clip_dataset_gives_whole_clips(store):
    ds = ClipDataset(store)
    assert [ds[i]["length"] for i in range(4)] == [int(s * SR) for s in (10.5, 3.0, 10.0, 0.7)]


def test_random_crops_are_fresh_each_epoch_and_reproducible(store):
    ds = RandomCropDataset(store, length_s=2.0, seed=3)
    starts = []
    for epoch in range(5):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item["length"] == 2 * SR and 0 <= item["start"] <= int(10.5 * SR) - 2 * SR
        expected = (np.arange(item["start"], item["start"] + 2 * SR) % 30000).astype(np.int16)
        assert torch.equal(item["wave"], torch.from_numpy(expected))
        starts.append(item["start"])
    assert len(set(starts)) == 5
    again = RandomCropDataset(store, length_s=2.0, seed=3)
    again.set_epoch(4)
    assert again[0]["start"] == starts[4]
    assert ds[3]["length"] == int(0.7 * SR) and ds[3]["start"] == 0  # shorter than the crop


def test_pad_collate(store):
    batch = pad_collate([ClipDataset(store)[i] for i in (3, 1)])
    assert batch["wave"].shape == (2, 3 * SR) and batch["wave"].dtype == torch.int16
    assert batch["lengths"].tolist() == [int(0.7 * SR), 3 * SR]
    assert (batch["wave"][0, int(0.7 * SR) :] == 0).all()
    assert batch["label"].shape == (2, 3) and batch["clip"].tolist() == [3, 1]


def test_class_balanced_sampler_draws_every_class_equally():
    rng = np.random.default_rng(0)
    # A skewed label distribution: class 0 on 90% of the items.
    labels = [np.array([0]) if rng.random() < 0.9 else np.array([1 + int(rng.integers(0, 4))]) for _ in range(1000)]
    sampler = ClassBalancedSampler(labels, num_classes=6, num_samples=1000, seed=1)
    draws = list(sampler)
    per_class = Counter(int(labels[i][0]) for i in draws)
    assert set(per_class) == {0, 1, 2, 3, 4}  # class 5 has no items and is never drawn
    assert max(per_class.values()) - min(per_class.values()) <= 1
    assert list(ClassBalancedSampler(labels, 6, 1000, seed=1)) == draws
    sampler.set_epoch(1)
    assert list(sampler) != draws


def test_class_balanced_sampler_shards_across_ranks():
    labels = [np.array([i % 7]) for i in range(200)]
    full = ClassBalancedSampler(labels, 7, num_samples=101, seed=2).draws().tolist()
    shards = [list(ClassBalancedSampler(labels, 7, num_samples=101, seed=2, rank=r, world_size=3)) for r in range(3)]
    assert sorted(sum(shards, [])) == sorted(full)
    assert shards[1] == full[1::3]
    assert [len(ClassBalancedSampler(labels, 7, 101, rank=r, world_size=3)) for r in range(3)] == [34, 34, 33]


def test_sharded_shuffle_sampler_covers_everything_in_equal_shares():
    shards = [list(ShardedShuffleSampler(10, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    assert set(sum(shards, [])) == set(range(10))
    assert list(ShardedShuffleSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]
