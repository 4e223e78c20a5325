"""Stages trained on weak clip labels: the `teacher` on the large split (AudioSet `full`)
and the weak `baseline`, the student network on the small split's weak labels; and the
teacher brought in from the authors' release instead of trained (`psl teacher import`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from psl import tracking
from psl.checkpoints import check_classes, open_release
from psl.config import as_dict
from psl.data.classes import audioset_classes
from psl.data.datasets import RandomCropDataset
from psl.scoring import evaluate_split
from psl.metrics import TaggingMetrics
from psl.models.release import RELEASE_MODEL
from psl.objectives import weak_bce
from psl.stages.common import Resolved, build_section, data_root, open_split
from psl.stages.training_stage import StageResult, StageSpec, TaggerStageConfig, log_evaluation, run_training_stage
from psl.trainer import CHECKPOINT_FORMAT, Distributed, default_device, save_atomic

IMPORTED = "teacher-imported"


@dataclass
class ImportResult:
    run_id: str
    test: TaggingMetrics | None  # on the eval split, when a store root was given
    best_checkpoint: Path
    sha256: str
    seconds: float = 0.0  # of training: none


@dataclass(frozen=True)
class TeacherConfig(TaggerStageConfig):
    import_: str = ""  # `teacher.import`: the authors' released teacher file, imported instead of trained


def run_weak_stage(
    resolved: Resolved,
    cfg: TaggerStageConfig,
    stage: str,
    variant: str,
    *,
    out: Path,
    data: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    tags: dict[str, str] | None = None,
) -> StageResult | None:
    def spec(stores, root, device):
        dataset = RandomCropDataset(stores["train"], cfg.data.clip_seconds, seed=cfg.train.seed)
        return StageSpec(stage, variant, dataset, weak_bce)

    return run_training_stage(resolved, cfg, spec, out=out, data=data, resume=resume, progress=progress, tags=tags)


def run_teacher(resolved: Resolved, **options) -> StageResult | ImportResult | None:
    """Trains the teacher, or imports the released one when the config names it (`teacher.import`)."""
    cfg = build_section(TeacherConfig, resolved, "teacher")
    if not cfg.import_:
        return run_weak_stage(resolved, cfg, "teacher", "teacher", **options)
    root = data_root(cfg.data, resolved, options.get("data"))
    return import_teacher(
        Path(cfg.import_), out=options["out"], data=root, eval_split=cfg.data.eval_split, tags=options.get("tags")
    )


def run_baseline(resolved: Resolved, **options) -> StageResult | None:
    cfg = build_section(TaggerStageConfig, resolved, "baseline")
    return run_weak_stage(resolved, cfg, "baseline", "weak", **options)


def import_teacher(
    file: Path,
    *,
    out: Path,
    data: Path | None = None,
    eval_split: str = "eval",
    tags: dict[str, str] | None = None,
) -> ImportResult:
    """The authors' released teacher as a psl teacher: a checkpoint in `out` and a `teacher`
    run (variant `teacher-imported`, the file's sha256 as provenance, the AudioSet class
    list) that `psl label`, `psl evaluate` and `psl student --teacher` take like a trained
    one. With `data`, it is also evaluated on that store root's `eval_split`."""
    tracking.check_tracking()
    file, out = Path(file), Path(out)
    classes = audioset_classes()
    opened = open_release(file, classes)
    model, sha = opened.model, opened.sha256
    source = {"file": str(file.resolve()), "sha256": sha}
    snapshot = {**opened.config, "variant": IMPORTED, "source": source}
    out.mkdir(parents=True, exist_ok=True)
    save_atomic({"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "config": snapshot}, out / "best.pt")
    store = open_split(data, eval_split) if data is not None else None
    with tracking.stage_run(
        "teacher",
        run_name=IMPORTED,
        variant=IMPORTED,
        dataset=store.meta.get("dataset", Path(data).name) if store else "audioset",
        config={"import": source, "model": as_dict(RELEASE_MODEL)},
        out=out,
        extra_tags={"psl.source_sha256": sha, **(tags or {})},
    ) as run:
        tracking.log_text(classes.csv_text(), "classes.csv")
        tracking.log_file(out / "best.pt", "checkpoints")
        test = None
        if store is not None:
            check_classes(opened.config, store, IMPORTED)
            evaluation = evaluate_split(model, store, device=default_device(Distributed()))
            test = evaluation.test
            log_evaluation(evaluation, store, f"{IMPORTED}, {eval_split} split", IMPORTED)
        return ImportResult(run.info.run_id, test, out / "best.pt", sha)
