"""`psl bench train`: the three jobs that keep an accelerator busy, end to end, against the
model alone on a batch already on the device, measured in the same run:

- teacher training on 10-s clips (packed store -> DataLoader -> native front end -> step),
- student training on 2-s chunks with their stored pseudo labels,
- `psl label` over the store (read, teacher pass, frames written).

Each also gets a row for its data path alone (the loader without steps; labelling with a
stand-in teacher), which tells whether the data or the model limits it.

The training rows run the real `Trainer` (its loader, pinned memory and step); the default
shape is AudioSet's (10-s noise clips, 527 classes, MobileNetV2 width 1.0, bf16 autocast).
Nothing here imports mlflow, so it runs on machines that only have torch."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.utils.data import Dataset

from psl.bench.data import LABEL_META, make_noise_store
from psl.bench.timing import Comparison, synchronize
from psl.data.datasets import ChunkDataset, RandomCropDataset
from psl.data.store import ClipStore
from psl.labels import LabelStore, PseudoLabelled, write_label_store
from psl.models.mobilenetv2 import TaggerOutput
from psl.models.tagger import AudioTagger, ModelConfig
from psl.objectives import psl_loss, weak_bce
from psl.precision import autocast
from psl.trainer import TrainConfig, Trainer, sampler_factory

PREFETCH_FACTOR = 2  # DataLoader's default: batches each worker holds ready


def _seconds(fn: Callable[[], object], calls: int, device: torch.device) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize(device)
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
) -> list[Comparison]:
    """Items/s of training steps fed by the Trainer's own loader; of the same steps on one
    batch kept on the device; and of the loader alone (batches copied to the device, no
    step), which says whether the data or the model limits the first. Blocks of the three
    alternate; each loader block first takes, untimed, the batches its workers prepared
    during the previous block."""
    lead = workers * PREFETCH_FACTOR + 1
    cfg = TrainConfig(
        epochs=1, batch_size=batch, workers=workers, amp=amp, steps_per_epoch=(repeats + 1) * 2 * (lead + steps) + 1
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
    rate = _step_rates(trainer, lead, device=device, batch=batch, steps=steps, repeats=repeats)
    return [
        Comparison(what, device.type, unit, rate["loaded"], "model step alone", rate["alone"]),
        Comparison(
            f"  its loader alone, workers={workers}",
            device.type,
            unit,
            rate["loader"],
            "model step alone",
            rate["alone"],
        ),
    ]


def _step_rates(
    trainer: Trainer, lead: int, *, device: torch.device, batch: int, steps: int, repeats: int
) -> dict[str, float]:
    """Items/s, the median over `repeats` blocks, of the steps on one batch on the device
    ("alone"), of the steps fed by the loader ("loaded") and of the loader alone ("loader").
    Before each loader block, `lead` batches are taken untimed: those ready in advance."""
    batches: Iterator[dict] = iter(trainer.epoch_loader(0))
    fixed = {k: v.to(device) if k != "lengths" and torch.is_tensor(v) else v for k, v in next(batches).items()}

    def load_only() -> None:
        next(batches)["wave"].to(device, non_blocking=True)

    def timed_from_loader(fn: Callable[[], object]) -> float:
        for _ in range(lead):
            next(batches)
        return _seconds(fn, steps, device)

    times: dict[str, list[float]] = {"alone": [], "loaded": [], "loader": []}
    for block in range(repeats + 1):  # the first block warms up all three
        measured = {
            "alone": _seconds(lambda: trainer.train_step(fixed), steps, device),
            "loaded": timed_from_loader(lambda: trainer.train_step(next(batches))),
            "loader": timed_from_loader(load_only),
        }
        for name, seconds in measured.items():
            if block:
                times[name].append(seconds)
    return {name: steps * batch / statistics.median(seconds) for name, seconds in times.items()}


class StandInTeacher(torch.nn.Module):
    """The teacher's outputs without its work: zeros of the shapes it would give, made on the
    device, so that `psl label` with it times the reads, copies and writes alone."""

    def __init__(self, teacher: AudioTagger) -> None:
        super().__init__()
        self.teacher = teacher

    @property
    def num_classes(self) -> int:
        return self.teacher.num_classes

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> TaggerOutput:
        hop, output_frames = self.teacher.frontend.hop_length, self.teacher.backbone.output_frames
        frames = output_frames(1 + wave.shape[1] // hop)
        valid = output_frames(1 + lengths.to(wave.device) // hop).clamp(1, frames)
        zeros = torch.zeros(len(wave), frames, self.num_classes, device=wave.device)
        # write_label_store reads frames and valid_frames (clip in isolated mode), no embedding.
        return TaggerOutput(zeros[:, 0], zeros, zeros[:, 0], valid)


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
) -> tuple[list[Comparison], LabelStore]:
    """Clips/s of `psl label` over the whole store, and of its host side alone (a stand-in
    teacher), against the teacher's forward pass alone."""
    teacher.eval().to(device)
    wave = torch.from_numpy(store.read(0)).repeat(batch, 1).to(device)
    lengths = torch.full((batch,), wave.shape[1])

    @torch.inference_mode()
    def forward():
        with autocast(device, amp):
            teacher(wave, lengths).frames.float().cpu()

    def label(model: torch.nn.Module, out: Path) -> float:
        start = time.perf_counter()
        write_label_store(
            model, store, out, LABEL_META, batch_size=batch, device=device, amp=amp, workers=workers, progress=False
        )
        return len(store) / (time.perf_counter() - start)

    forward()
    calls = max(1, len(store) // batch)
    stand_in = StandInTeacher(teacher)
    rates: dict[str, list[float]] = {"end to end": [], "host side": [], "forward": []}  # clips/s
    for r in range(repeats):
        rates["end to end"].append(label(teacher, scratch / f"labels{r}"))
        rates["host side"].append(label(stand_in, scratch / f"stand-in{r}"))
        rates["forward"].append(calls * batch / _seconds(forward, calls, device))
        for out in [scratch / f"stand-in{r}"] + ([scratch / f"labels{r}"] if r else []):
            shutil.rmtree(out)
    forward_rate = statistics.median(rates["forward"])
    rows = [
        Comparison(
            "psl label, 10-s clips",
            device.type,
            "clips/s",
            statistics.median(rates["end to end"]),
            "teacher forward alone",
            forward_rate,
        ),
        Comparison(
            f"  its host side alone, workers={workers}",
            device.type,
            "clips/s",
            statistics.median(rates["host side"]),
            "teacher forward alone",
            forward_rate,
        ),
    ]
    return rows, LabelStore(scratch / "labels0")


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
        label_rows, labels = bench_labelling(
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
        teacher_rows = bench_training(
            "teacher train, 10-s clips",
            "clips/s",
            AudioTagger(classes, ModelConfig(width=width)),
            RandomCropDataset(store, 10.0),
            weak_bce,
            **options,
        )
        student_rows = bench_training(
            "student train, 2-s chunks + stored labels",
            "chunks/s",
            AudioTagger(classes, ModelConfig(width=width)),
            PseudoLabelled(ChunkDataset(store, 2.0, 2.0), labels, 2.0),
            psl_loss(1.0),
            **options,
        )
    return [*teacher_rows, *student_rows, *label_rows]
