"""Stage `student`: a tagger trained on chunks of the small split with pseudo strong labels,
`loss = a * BCE(p, psl) + (1 - a) * BCE(p, weak)` (a = 1: PSL; a = 0.5: teacher-student).

Chunks come from a fixed grid (length L, hop H) or are random crops of length L drawn
afresh every epoch; either way the chunk's pseudo label is pooled on the fly from the
stored teacher frames it covers (`psl.ops.chunk_pool`), with no teacher pass."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from psl import tracking
from psl.data.datasets import ChunkDataset, RandomCropDataset
from psl.labels import LabelMismatch, LabelStore, chunk_target, span_targets
from psl.evaluate import autocast
from psl.stages.common import Resolved, build_section, load_tagger
from psl.stages.training import StageResult, StageSpec, TaggerStageConfig, bce, mixed, run_training_stage


@dataclass(frozen=True)
class ChunkConfig:
    length_s: float = 2.0
    hop_s: float = 2.0  # grid only
    sampling: str = "grid"  # "grid" (fixed chunks) or "crop" (random crops, new every epoch)

    def __post_init__(self) -> None:
        if self.sampling not in ("grid", "crop"):
            raise ValueError(f"sampling must be grid or crop, got {self.sampling!r}")
        if self.length_s <= 0 or self.hop_s <= 0:
            raise ValueError("length_s and hop_s must be positive")


@dataclass(frozen=True)
class StudentConfig(TaggerStageConfig):
    chunk: ChunkConfig = field(default_factory=ChunkConfig)
    alpha: float = 1.0  # weight of the pseudo labels; 1 - alpha goes to the weak clip labels

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")

    @property
    def variant(self) -> str:
        recipe = "psl" if self.alpha == 1.0 else "ts" if self.alpha > 0 else "weak"
        return f"{recipe}-{self.chunk.length_s:g}s" + ("-crop" if self.chunk.sampling == "crop" else "")


class PseudoLabelled(Dataset):
    """Items of a chunk or crop dataset with their pseudo label `psl`: the teacher frames
    over exactly the item's span, or (isolated labels) the teacher's output on that chunk."""

    def __init__(self, base: Dataset, labels: LabelStore, length_s: float) -> None:
        self.base, self.labels, self.length_s = base, labels, length_s
        self.store = base.store
        self.isolated = labels.meta["mode"] == "isolated"

    def __len__(self) -> int:
        return len(self.base)

    def clip_labels(self):
        return self.base.clip_labels()

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __getitem__(self, i: int) -> dict:
        item = self.base[i]
        clip_id = self.store.ids[item["clip"]]
        start_s = item["start"] / self.store.sample_rate
        item["psl"] = (
            chunk_target(self.labels, clip_id, start_s)
            if self.isolated
            else span_targets(self.labels, clip_id, start_s, self.length_s)
        )
        return item


def psl_loss(alpha: float):
    def loss(output, batch: dict, mix) -> object:
        device = output.clip.device
        total = alpha * bce(output.clip, mixed(batch["psl"].to(device), batch, mix))
        if alpha < 1.0:
            total = total + (1.0 - alpha) * bce(output.clip, mixed(batch["label"].to(device), batch, mix))
        return total

    return loss


def online_psl_loss(teacher: torch.nn.Module, alpha: float, amp: str):
    """The original release's way, kept for comparison: the teacher runs inside every training
    step on the very chunks the student sees, and its clip probabilities are the targets."""
    teacher.eval()

    def loss(output, batch: dict, mix) -> torch.Tensor:
        device = output.clip.device
        with torch.no_grad(), autocast(device, amp):
            target = teacher(batch["wave"].to(device), batch["lengths"]).clip.float()
        total = alpha * bce(output.clip, target)  # the teacher saw the mixed inputs: no mixing needed
        if alpha < 1.0:
            total = total + (1.0 - alpha) * bce(output.clip, mixed(batch["label"].to(device), batch, mix))
        return total

    return loss


def open_labels(labels: str, split: str, scratch: Path) -> tuple[LabelStore, str | None]:
    """The label store of `split` from a folder written by `psl label`, or from a `label` run id:
    its folder when it is still on this machine, else the store the run logged."""
    if Path(labels).is_dir():
        return LabelStore(Path(labels) / split), tracking.run_id_of(Path(labels))
    local = tracking.summary(labels).tags.get("psl.labels_dir", "")
    if local and tracking.run_id_of(Path(local)) == labels:
        return LabelStore(Path(local) / split), labels
    return LabelStore(tracking.download_dir(labels, "labels", scratch) / split), labels


def run_student(
    resolved: Resolved,
    labels: str | None = None,
    *,
    teacher: str | None = None,
    out: Path,
    data: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    tags: dict[str, str] | None = None,
) -> StageResult | None:
    """Trains a student on stored pseudo labels (`labels`: a `psl label` folder or run id) or,
    with `teacher` (a checkpoint or run id) instead, on the teacher's outputs computed online."""
    if (labels is None) == (teacher is None):
        raise ValueError("give the student either stored labels or a teacher for online labelling")
    cfg = build_section(StudentConfig, resolved, "student")
    with tempfile.TemporaryDirectory(prefix="psl-labels-") as scratch:

        def spec(stores, root, device):
            store = stores["train"]
            c = cfg.chunk
            base = (
                ChunkDataset(store, c.length_s, c.hop_s)
                if c.sampling == "grid"
                else RandomCropDataset(store, c.length_s, seed=cfg.train.seed)
            )
            if teacher is not None:
                from psl.stages.evaluate import resolve_checkpoint

                checkpoint, teacher_run = resolve_checkpoint(teacher, Path(scratch))
                model, config = load_tagger(checkpoint)
                if config["class_ids"] != list(store.classes.ids):
                    raise LabelMismatch(f"the teacher's classes are not the classes of {store.path}")
                loss = online_psl_loss(model.to(device), cfg.alpha, cfg.train.amp)
                return StageSpec(
                    "student",
                    cfg.variant + "-online",
                    base,
                    loss,
                    {"psl.teacher_run_id": teacher_run or ""},
                    {"teacher": teacher},
                )
            label_store, labels_run = open_labels(labels, store.path.name, Path(scratch))
            label_store.check_matches(store)
            meta = label_store.meta
            isolated = meta["mode"] == "isolated"
            if isolated and (c.sampling, c.length_s, c.hop_s) != ("grid", meta["chunk_length_s"], meta["chunk_hop_s"]):
                raise LabelMismatch(
                    f"{label_store.path} holds isolated-chunk labels of a {meta['chunk_length_s']:g}-s grid with "
                    f"hop {meta['chunk_hop_s']:g} s; the student must use that grid (chunk.sampling=grid)"
                )
            tags = {"psl.labels_run_id": labels_run or "", "psl.teacher_run_id": meta.get("teacher_run_id", "")}
            params = {"labels.source": labels, "labels.teacher_checkpoint_sha256": meta["teacher_checkpoint_sha256"]}
            variant = cfg.variant + ("-isolated" if isolated else "")
            return StageSpec(
                "student", variant, PseudoLabelled(base, label_store, c.length_s), psl_loss(cfg.alpha), tags, params
            )

        return run_training_stage(resolved, cfg, spec, out=out, data=data, resume=resume, progress=progress, tags=tags)
