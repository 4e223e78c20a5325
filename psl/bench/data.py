"""`psl bench data`: read throughput of the clip store, against a plain memory copy of the
same bytes measured in the same run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from psl.bench.timing import Comparison
from psl.data.classes import ClassList
from psl.data.datasets import ClipDataset, RandomCropDataset, pad_collate
from psl.data.store import ClipStore, StoreWriter


# What a benchmark's label store records instead of a real teacher's provenance.
LABEL_META = dict(
    teacher_run_id="", teacher_checkpoint_sha256="bench", class_names=[], frame_seconds=0.32, frontend={}, created=""
)


def make_noise_store(path: Path, clips: int, seconds: float, seed: int = 0, num_classes: int = 2) -> ClipStore:
    """A store of noise clips, clip i labelled with class i mod `num_classes`."""
    rng = np.random.default_rng(seed)
    ids = tuple(f"c{k}" for k in range(num_classes))
    writer = StoreWriter(path, ClassList(ids, ids))
    for i in range(clips):
        samples = rng.integers(-3000, 3000, int(seconds * 16000), dtype=np.int16)
        writer.append(f"clip{i:06d}", samples, [i % num_classes], "noise")
    return writer.finish()


def _rate(fn, count: int, budget_s: float) -> float:
    """Items per second of `fn()` (which handles `count` items), repeated for `budget_s`."""
    fn()  # warm the page cache and code paths
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget_s:
        fn()
        calls += 1
    return calls * count / (time.perf_counter() - start)


def bench_reads(store: ClipStore, crop_s: float, batch: int, workers: int, budget_s: float) -> list[Comparison]:
    """Clips/s of whole clips and of crops read from `store`, in this process and, with
    `workers`, through a DataLoader."""
    rows = _one_process_rows(store, crop_s, batch, budget_s)
    if workers:
        for name, dataset, one_process in (
            ("whole clips", ClipDataset(store), rows[0]),
            (f"{crop_s:g}-s crops", RandomCropDataset(store, crop_s), rows[1]),
        ):
            rows.append(_loader_row(name, dataset, batch, workers, budget_s, one_process))
    return rows


def _one_process_rows(store: ClipStore, crop_s: float, batch: int, budget_s: float) -> list[Comparison]:
    """Whole clips and random crops read in this process, against copying as many bytes from
    RAM: the store's own cost, file system and page cache included."""
    rng = np.random.default_rng(0)
    n = len(store)
    clip_bytes = float(store.num_samples.mean()) * 2
    crop = int(crop_s * store.sample_rate)
    ram = np.frombuffer(np.random.default_rng(1).bytes(int(clip_bytes) * 64), dtype=np.int16)

    def whole():
        for i in rng.integers(0, n, batch):
            torch.from_numpy(store.read(int(i))).float().mul_(1 / 32768)

    def crops():
        for i in rng.integers(0, n, batch):
            start = int(rng.integers(0, max(1, int(store.num_samples[i]) - crop)))
            torch.from_numpy(store.read(int(i), start, min(start + crop, int(store.num_samples[i])))).float().mul_(
                1 / 32768
            )

    def copy_clips():
        for k in rng.integers(0, 64, batch):
            torch.from_numpy(ram[int(k) * len(ram) // 64 : (int(k) + 1) * len(ram) // 64].copy()).float().mul_(
                1 / 32768
            )

    copy_rate = _rate(copy_clips, batch, budget_s)
    return [
        Comparison(
            "whole clips, 1 process", "cpu", "clips/s", _rate(whole, batch, budget_s), "RAM copy + float", copy_rate
        ),
        Comparison(
            f"{crop_s:g}-s crops, 1 process",
            "cpu",
            "clips/s",
            _rate(crops, batch, budget_s),
            "RAM copy + float",
            copy_rate * clip_bytes / (crop * 2),
        ),
    ]


def _loader_row(name: str, dataset, batch: int, workers: int, budget_s: float, one_process: Comparison) -> Comparison:
    """The same reads through a DataLoader with `workers` processes, against one process."""
    loader = DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        collate_fn=pad_collate,
        persistent_workers=True,
    )

    def epoch():
        for b in loader:
            b["wave"].float()

    rate = _rate(epoch, len(dataset), budget_s)
    return Comparison(f"{name}, DataLoader {workers} workers", "cpu", "clips/s", rate, "1 process", one_process.psl)


def run(
    data: Path | None, clips: int, seconds: float, crop_s: float, batch: int, workers: int, budget_s: float
) -> list[Comparison]:
    # One thread, as in a DataLoader worker: the int16 -> float32 conversion of one clip
    # is too small to split, and a busy second core would stall the split.
    torch.set_num_threads(1)
    if data is not None:
        return bench_reads(ClipStore(data), crop_s, batch, workers, budget_s)
    with tempfile.TemporaryDirectory(prefix="psl-bench-") as tmp:
        store = make_noise_store(Path(tmp) / "bench", clips, seconds)
        return bench_reads(store, crop_s, batch, workers, budget_s)
