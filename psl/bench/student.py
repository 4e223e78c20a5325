"""`psl bench student`: what stored pseudo labels cost a student's training step, against the
same step with constant targets and with the teacher run online, in one run."""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from psl.bench.data import LABEL_META, make_noise_store
from psl.bench.timing import Comparison, interleaved_medians
from psl.data.datasets import ChunkDataset, RandomCropDataset, pad_collate
from psl.data.store import ClipStore
from psl.labels import LabelStore, PseudoLabelled, write_label_store
from psl.objectives import bce, online_psl_loss, psl_loss
from psl.models.tagger import AudioTagger, ModelConfig
from psl.precision import autocast


def run(
    store_path: Path | None,
    clips: int,
    chunk_s: float,
    batch: int,
    steps: int,
    width: float,
    workers: int,
    amp: str,
    repeats: int,
) -> list[Comparison]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="psl-bench-") as tmp:
        store = ClipStore(store_path) if store_path else make_noise_store(Path(tmp) / "clips", clips, 10.0)
        classes = len(store.classes)
        teacher = AudioTagger(classes, ModelConfig(width=width)).to(device).eval()
        start = time.perf_counter()
        labels = write_label_store(
            teacher, store, Path(tmp) / "labels", LABEL_META, device=device, amp=amp, progress=False
        )
        label_rate = len(store) / (time.perf_counter() - start)

        student = AudioTagger(classes, ModelConfig(width=width)).to(device).train()
        optimizer = torch.optim.Adam(student.parameters(), lr=1e-4)
        constant = torch.full((batch, classes), 0.1, device=device)
        modes = _student_modes(store, labels, teacher, constant, chunk_s, amp)
        loader = dict(batch=batch, steps=steps, workers=workers, device=device, amp=amp)
        runners = {name: _train_steps(student, optimizer, *spec, **loader) for name, spec in modes.items()}
        seconds = interleaved_medians(runners, device, repeats, warmup=1)
    return _comparisons({name: steps * batch / t for name, t in seconds.items()}, label_rate, device)


def _student_modes(
    store: ClipStore, labels: LabelStore, teacher: AudioTagger, constant: torch.Tensor, chunk_s: float, amp: str
) -> dict[str, tuple[Dataset, Callable]]:
    """The compared ways of training a student, each its data set and loss: the constant
    targets are the floor that data loading and the step itself cost."""
    grid = ChunkDataset(store, chunk_s, chunk_s)
    return {
        "constant targets": (grid, lambda out, b, mix: bce(out.clip, constant[: len(out.clip)])),
        "stored labels, grid": (PseudoLabelled(grid, labels, chunk_s), psl_loss(1.0)),
        "stored labels, random crops": (
            PseudoLabelled(RandomCropDataset(store, chunk_s), labels, chunk_s),
            psl_loss(1.0),
        ),
        "online teacher": (grid, online_psl_loss(teacher, 1.0, amp)),
    }


def _train_steps(
    student: AudioTagger,
    optimizer: torch.optim.Optimizer,
    dataset: Dataset,
    loss_fn: Callable,
    *,
    batch: int,
    steps: int,
    workers: int,
    device: torch.device,
    amp: str,
) -> Callable[[], None]:
    """What one timing repeat runs: `steps` training steps of the student on `dataset`, its
    loader kept alive between repeats so that worker start-up is not timed."""
    batches = itertools.cycle(
        DataLoader(
            dataset,
            batch_size=batch,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            collate_fn=pad_collate,
            persistent_workers=workers > 0,
        )
    )

    def train_steps():
        for _ in range(steps):
            b = next(batches)
            with autocast(device, amp):
                out = student(b["wave"].to(device), b["lengths"])
            loss = loss_fn(out, b, None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return train_steps


def _comparisons(per_s: dict[str, float], label_rate: float, device: torch.device) -> list[Comparison]:
    """Each way against constant targets, and the one labelling pass against the online teacher."""
    rows = [
        Comparison(
            f"student step, {name}", device.type, "chunks/s", rate, "constant targets", per_s["constant targets"]
        )
        for name, rate in per_s.items()
        if name != "constant targets"
    ]
    rows.append(
        Comparison(
            "psl label (teacher pass, once)",
            device.type,
            "clips/s",
            label_rate,
            "online teacher (chunks/s)",
            per_s["online teacher"],
        )
    )
    return rows
