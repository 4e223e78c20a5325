"""`psl bench train`: the three jobs that keep an accelerator busy, end to end, against the
model alone on a batch already on the device, measured in the same run:

- teacher training on 10-s clips (packed store -> DataLoader -> native front end -> step),
- student training on 2-s chunks with their stored pseudo labels,
- `psl label` over the store (read, teacher pass, frames written).

The training rows run the real `Trainer` (its loader, pinned memory and step); the default
shape is AudioSet's (10-s noise clips, 527 classes, MobileNetV2 width 1.0, bf16 autocast).
Nothing here imports mlflow, so it runs on machines that only have torch."""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.utils.data import Dataset

from psl.bench.data import LABEL_META, make_noise_store
from psl.bench.timing import Comparison
from psl.data.datasets import ChunkDataset, RandomCropDataset
from psl.data.store import ClipStore
from psl.evaluate import autocast
from psl.labels import LabelStore, PseudoLabelled, write_label_store
from psl.models.tagger import AudioTagger, ModelConfig
from psl.objectives import psl_loss, weak_bce
from psl.train import TrainConfig, Trainer, sampler_factory

PREFETCH_FACTOR = 2  # DataLoader's default: batches each worker holds ready


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _seconds(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()  # a training step ends by reading its loss, which waits for the device
    return time.perf_counter() - start


def bench_training(
    what: str,
    unit: str,
    model: AudioTagger,
    dataset: Dataset,
    loss_fn,
    *,
    device: torch.device,
    batch: int,
    steps: int,
    workers: int,
    amp: str,
    repeats: int,
    scratch: Path,
) -> Comparison:
    """Items/s of training steps fed by the Trainer's own loader, and of the same steps on
    one batch kept on the device. Blocks of both alternate; each loader block first takes
    the batches its workers prepared during the previous block, untimed."""
    lead = workers * PREFETCH_FACTOR + 1
    cfg = TrainConfig(
        epochs=1, batch_size=batch, workers=workers, amp=amp, steps_per_epoch=(repeats + 1) * (lead + steps) + 1
    )
    trainer = Trainer(
        model,
        dataset,
        sampler_factory(dataset, model.num_classes, cfg),
        loss_fn,
        lambda m: None,  # never validated: only steps are timed
        cfg,
        scratch,
        device=device,
        progress=False,
    )
    batches: Iterator[dict] = iter(trainer.epoch_loader(0))
    fixed = {k: v.to(device) if k != "lengths" and torch.is_tensor(v) else v for k, v in next(batches).items()}
    loaded, alone = [], []
    for block in range(repeats + 1):  # the first block warms up both
        alone_s = _seconds(lambda: trainer.train_step(fixed), steps)
        for b in itertools.islice(batches, lead):
            trainer.train_step(b)
        loaded_s = _seconds(lambda: trainer.train_step(next(batches)), steps)
        if block:
            alone.append(alone_s)
            loaded.append(loaded_s)
    return Comparison(
        what, device.type, unit, steps * batch / _median(loaded), "model step alone", steps * batch / _median(alone)
    )


def bench_labelling(
    teacher: AudioTagger,
    store: ClipStore,
    *,
    device: torch.device,
    batch: int,
    workers: int,
    amp: str,
    repeats: int,
    scratch: Path,
) -> tuple[Comparison, LabelStore]:
    """Clips/s of `psl label` over the whole store against the teacher's forward pass alone."""
    teacher.eval().to(device)
    wave = torch.from_numpy(store.read(0)).repeat(batch, 1).to(device)
    lengths = torch.full((batch,), wave.shape[1])

    @torch.inference_mode()
    def forward():
        with autocast(device, amp):
            teacher(wave, lengths).frames.float().cpu()

    forward()
    calls = max(1, len(store) // batch)
    end_to_end, alone = [], []  # clips/s
    for r in range(repeats):
        out = scratch / f"labels{r}"
        start = time.perf_counter()
        write_label_store(
            teacher, store, out, LABEL_META, batch_size=batch, device=device, amp=amp, workers=workers, progress=False
        )
        end_to_end.append(len(store) / (time.perf_counter() - start))
        if r:
            shutil.rmtree(out)
        alone.append(calls * batch / _seconds(forward, calls))
    row = Comparison(
        "psl label, 10-s clips", device.type, "clips/s", _median(end_to_end), "teacher forward alone", _median(alone)
    )
    return row, LabelStore(scratch / "labels0")


def run(
    device: torch.device,
    data: Path | None,
    clips: int,
    classes: int,
    width: float,
    batch: int,
    steps: int,
    workers: int,
    amp: str,
    repeats: int,
) -> list[Comparison]:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="psl-bench-") as tmp:
        scratch = Path(tmp)
        store = ClipStore(data) if data else make_noise_store(scratch / "clips", clips, 10.0, num_classes=classes)
        classes = len(store.classes)
        label_row, labels = bench_labelling(
            AudioTagger(classes, ModelConfig(width=width)),
            store,
            device=device,
            batch=batch,
            workers=workers,
            amp=amp,
            repeats=repeats,
            scratch=scratch,
        )
        options = dict(
            device=device, batch=batch, steps=steps, workers=workers, amp=amp, repeats=repeats, scratch=scratch
        )
        teacher_row = bench_training(
            "teacher train, 10-s clips",
            "clips/s",
            AudioTagger(classes, ModelConfig(width=width)),
            RandomCropDataset(store, 10.0),
            weak_bce,
            **options,
        )
        student_row = bench_training(
            "student train, 2-s chunks + stored labels",
            "chunks/s",
            AudioTagger(classes, ModelConfig(width=width)),
            PseudoLabelled(ChunkDataset(store, 2.0, 2.0), labels, 2.0),
            psl_loss(1.0),
            **options,
        )
    return [teacher_row, student_row, label_row]
