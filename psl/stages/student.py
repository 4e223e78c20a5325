"""Stage `student`: a tagger trained on chunks of the small split with pseudo strong labels,
`loss = a * BCE(p, psl) + (1 - a) * BCE(p, weak)` (a = 1: PSL; a = 0.5: teacher-student).

Chunks come from a fixed grid (length L, hop H) or are random crops of length L drawn
afresh every epoch; either way the chunk's pseudo label is pooled on the fly from the
stored teacher frames it covers (`psl.ops.chunk_pool`), with no teacher pass."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path


from psl import tracking
from psl.checkpoints import open_tagger
from psl.data.datasets import ChunkDataset, RandomCropDataset
from psl.errors import ConfigError
from psl.labels import LabelMismatch, LabelStore, PseudoLabelled
from psl.objectives import online_psl_loss, psl_loss
from psl.stages.common import Resolved, build_section
from psl.stages.training_stage import StageResult, StageSpec, TaggerStageConfig, run_training_stage


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
        raise ConfigError("give the student either stored labels or a teacher for online labelling")
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
                opened = open_tagger(teacher, stores=[store], role="teacher")
                loss = online_psl_loss(opened.model.to(device), cfg.alpha, cfg.train.amp)
                return StageSpec(
                    "student",
                    cfg.variant + "-online",
                    base,
                    loss,
                    {"psl.teacher_run_id": opened.run_id or ""},
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
