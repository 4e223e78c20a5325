"""What the training stages (teacher, baseline, students) share: data and model set-up,
the trainer, the MLflow run, and the evaluation of the best checkpoint on `eval`.
A stage only says what it trains on and with which loss (a `StageSpec`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from psl import tracking
from psl.checkpoints import load_checkpoint, model_snapshot
from psl.config import as_dict
from psl.data.store import ClipStore
from psl.errors import MissingInput, OutputExists
from psl.scoring import Evaluation, evaluate, evaluate_split, per_class_table
from psl.locks import exclusive
from psl.metrics import TaggingMetrics
from psl.models.tagger import AudioTagger, ModelConfig
from psl.plots import ExampleClip, per_class_ap_figure, sed_examples_figure
from psl.stages.common import DataConfig, Resolved, TrackingConfig, data_root, open_split, same_classes
from psl.trainer import (
    Distributed,
    TrainConfig,
    Trainer,
    default_device,
    sampler_factory,
    seed_everything,
)


@dataclass(frozen=True)
class TaggerStageConfig:
    """A stage that trains a tagger on weak clip labels (the teacher, the weak baseline)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    eval_batch_size: int = 32

    def __post_init__(self) -> None:
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")


@dataclass
class StageSpec:
    stage: str  # psl.stage tag
    variant: str  # psl.variant tag, e.g. teacher, weak, psl-2s
    dataset: Dataset  # training items (with `clip_labels()` for the balanced sampler)
    loss_fn: Callable  # (output, batch, mix) -> loss
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class StageResult:
    run_id: str
    test: TaggingMetrics
    best_checkpoint: Path
    seconds: float


def log_test_results(metrics: TaggingMetrics, classes, title: str) -> None:
    tracking.log_metrics(metrics.as_dict("test/"))
    tracking.log_text(per_class_table(metrics, classes.ids, classes.names), "per_class_ap.csv")
    tracking.log_figure(per_class_ap_figure(classes.names, metrics.per_class_ap, title), "per_class_ap.png")


def log_evaluation(evaluation: Evaluation, store: ClipStore, title: str, model_name: str) -> None:
    """What `log_test_results` logs, plus the weak-label and event-level scores and a figure
    of a few clips' frame probabilities where the store has strong truth."""
    log_test_results(evaluation.test, store.classes, title)
    logged = evaluation.test.as_dict("test/")
    tracking.log_metrics({k: v for k, v in evaluation.metrics().items() if k not in logged})
    if evaluation.frames is not None:
        chosen = example_clips(evaluation, store)
        figure = sed_examples_figure(
            store.classes.names,
            [example_clip(evaluation, store, i) for i in chosen],
            {model_name: [evaluation.frames[i] for i in chosen]},
            evaluation.frame_seconds,
        )
        tracking.log_figure(figure, "sed_examples.png")


def example_clips(evaluation: Evaluation, store: ClipStore, count: int = 4) -> list[int]:
    """Clips worth looking at: those whose weak label misses a true tag first (what pseudo
    labels are for), then those with the most true classes; ties in store order."""
    truth = np.zeros((len(store), len(store.classes)), dtype=bool)
    for e in evaluation.events or ():
        truth[e.clip, e.label] = True
    weak = evaluation.weak_labels.astype(bool) if evaluation.weak_labels is not None else truth
    missed = (truth & ~weak).any(axis=1)
    order = np.lexsort((np.arange(len(store)), -truth.sum(axis=1), ~missed))
    return [int(i) for i in order[:count]]


def example_clip(evaluation: Evaluation, store: ClipStore, i: int) -> ExampleClip:
    weak = None if evaluation.weak_labels is None else set(np.flatnonzero(evaluation.weak_labels[i]).tolist())
    events = [(e.label, e.onset, e.offset) for e in evaluation.events or () if e.clip == i]
    return ExampleClip(store.ids[i], store.duration(i), events, weak)


def run_training_stage(
    resolved: Resolved,
    cfg,
    make_spec: Callable[[dict[str, ClipStore], Path, torch.device], StageSpec],
    *,
    out: Path,
    data: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    tags: dict[str, str] | None = None,
) -> StageResult | None:
    """Trains, validates and evaluates one tagger; returns the result on rank 0 (None elsewhere).
    `tags` go on its MLflow run besides the stage's own."""
    ddp = Distributed.from_env()
    if ddp.is_main:  # only rank 0 talks to MLflow
        tracking.check_tracking()
    root, stores = _open_stage_stores(cfg, resolved, data, ddp)
    classes = stores["train"].classes
    seed_everything(cfg.train.seed)
    device = default_device(ddp)
    spec = make_spec(stores, root, device)
    model = AudioTagger(len(classes), cfg.model)
    out = Path(out)
    # One process trains into a folder at a time (rank 0's lock covers the other ranks).
    with exclusive(out / ".lock", f"the checkpoint folder {out}") if ddp.is_main else nullcontext():
        _check_resume(out, resume)
        trainer = Trainer(
            model,
            spec.dataset,
            sampler_factory(spec.dataset, len(classes), cfg.train),
            spec.loss_fn,
            _validator(stores["val"], cfg, device),
            cfg.train,
            out,
            sink=tracking.metric_sink if ddp.is_main else None,
            ddp=ddp,
            device=device,
            config_snapshot=_config_snapshot(cfg, classes, spec.variant, root),
            progress=progress,
        )
        if resume:
            trainer.resume(out / "last.pt")
        if not ddp.is_main:
            trainer.fit()
            return None
        run = tracking.stage_run(
            spec.stage,
            run_name=f"{spec.variant}-{resolved.profile or resolved.source.stem}",
            variant=spec.variant,
            dataset=stores["train"].meta.get("dataset", root.name),
            extra_tags={**spec.tags, **(tags or {})},
            config={**as_dict(cfg), "data.root_resolved": str(root), **spec.params},
            out=out,
            resumed_at_step=trainer.state["step"] if resume else None,
        )
        return _train_tracked(trainer, model, run, resolved, cfg, spec, stores["eval"], out, device)


def _open_stage_stores(
    cfg, resolved: Resolved, data: Path | None, ddp: Distributed
) -> tuple[Path, dict[str, ClipStore]]:
    """The data root and its train, val and eval splits, checked to share one class list."""
    if not ddp.is_main:
        ddp.barrier()  # rank 0 generates the synthetic benchmark first, if it is missing
    root = data_root(cfg.data, resolved, data)
    if ddp.is_main:
        ddp.barrier()
    stores = {s: open_split(root, getattr(cfg.data, f"{s}_split")) for s in ("train", "val", "eval")}
    same_classes(stores)
    return root, stores


def _config_snapshot(cfg, classes, variant: str, root: Path) -> dict:
    """What each checkpoint records of how it was made: enough to rebuild the model and tell
    which stage, variant and data trained it."""
    return {
        **model_snapshot(cfg.model, classes.ids, classes.names),
        "stage": as_dict(cfg),
        "variant": variant,
        "data_root": str(root),
    }


def _validator(val_store: ClipStore, cfg, device: torch.device) -> Callable[[AudioTagger], TaggingMetrics]:
    """The trainer's validation: the model's scores on the `val` split."""

    def validate(m):
        return evaluate(m, val_store, batch_size=cfg.eval_batch_size, device=device, amp=cfg.train.amp)[0]

    return validate


def _check_resume(out: Path, resume: bool) -> None:
    """A finished or killed run is continued only when asked; nothing is overwritten."""
    if not resume and (out / "last.pt").exists():
        raise OutputExists(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    if resume and not (out / "last.pt").exists():
        raise MissingInput(f"--resume: {out / 'last.pt'} does not exist")


def _train_tracked(
    trainer: Trainer,
    model: AudioTagger,
    stage_run: AbstractContextManager,
    resolved: Resolved,
    cfg,
    spec: StageSpec,
    eval_store: ClipStore,
    out: Path,
    device: torch.device,
) -> StageResult:
    """Rank 0's part, inside the stage's MLflow run: trains, then evaluates the best checkpoint
    on `eval` and logs the scores, how training ended, the checkpoint and (if asked) the model."""
    with stage_run as run:
        tracking.log_text(resolved.source.read_text(), "config/source.yaml")
        result = trainer.fit()
        model.load_state_dict(load_checkpoint(out / "best.pt")["model"])
        evaluation = evaluate_split(model, eval_store, batch_size=cfg.eval_batch_size, device=device, amp=cfg.train.amp)
        log_evaluation(evaluation, eval_store, f"{spec.variant}, eval split", spec.variant)
        tracking.log_metrics(
            {
                "train/seconds": result.seconds,
                "train/best_step": result.best_step,
                "train/steps": result.steps,  # where early stopping (or the budget) ended it
                "train/epochs": trainer.state["epoch"],
                "train/stopped_early": float(result.stopped_early),
            }
        )
        tracking.log_file(out / "best.pt", "checkpoints")
        if cfg.tracking.log_model:
            tracking.log_model(model.cpu(), cfg.tracking.register_as or None)
        return StageResult(run.info.run_id, evaluation.test, out / "best.pt", result.seconds)
