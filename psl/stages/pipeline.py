"""`psl pipeline`: the whole method as nested MLflow runs under one `pipeline` run.

data (synthesised if absent) -> teacher -> label -> students + weak baseline -> transfer
-> registry.

Every stage has a key: a hash of its resolved config, of what goes into it (the manifests
of the splits it reads, the run ids of the stages it builds on) and of the code that runs
it (`psl.provenance.code_identity`: after any change to psl, nothing is reused). A stage whose
key matches a FINISHED run of the experiment is not run again: that run stands in for it
(MLflow's multistep example does the same), unless `force`. A stage interrupted earlier
resumes from its folder, runs/pipeline/VARIANT-KEY, which the key names.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from psl import tracking
from psl.checkpoints import open_tagger
from psl.config import ConfigError, as_dict, build
from psl.scoring import evaluate
from psl.locks import exclusive
from psl.precision import KNOWN_PRECISIONS, PRECISIONS
from psl.provenance import code_identity, file_sha256
from psl.data.store import is_store
from psl.stages.common import DataConfig, Resolved, build_section, data_root, open_split
from psl.stages.label import LabelResult, run_label
from psl.stages.student import StudentConfig, run_student
from psl.stages.weak import IMPORTED, TeacherConfig, import_teacher, run_baseline, run_teacher
from psl.stages.training_stage import StageResult, TaggerStageConfig
from psl.stages.transfer import MODES, TransferConfig, run_transfer
from psl.trainer import default_device, Distributed

OUT_ROOT = Path("runs") / "pipeline"
BEST_VAL = "val/best_mAP"  # what decides between models: never a test metric
FIXED_BUDGET_EVALS = 10  # validations (epochs of fixed_updates / 10 batches) under pipeline.fixed_updates
VARIANT = re.compile(r"^(psl|ts)-(\d+(?:\.\d+)?)s(?:-(crop|isolated))?$")


@dataclass(frozen=True)
class PipelineConfig:
    # Students by their DESIGN.md names: psl-<L>s (a = 1), ts-<L>s (a = 0.5), with -crop
    # (random crops) or -isolated (the paper's labelling of each chunk alone).
    students: list[str] = field(default_factory=lambda: ["psl-2s"])
    baseline: bool = True
    # Transfer of the baseline and the students to the profile's FSD-like set (or the
    # `transfer:` section's data): linear, finetune, both or none.
    transfer: list[str] = field(default_factory=lambda: ["linear"])
    label_batch_size: int = 32
    label_amp: str = "bf16"
    label_top_k: int = 0
    register_as: str = "psl-student"  # registered model name of the best student; empty: none
    alias: str = "champion"
    # "paper": the students must be labelled as the paper did, each chunk alone (-isolated).
    protocol: str = "psl"
    # 0: the students and the baseline train as configured (the profiles: until val mAP stops
    # improving, each chunk once per epoch, as the paper compares them). N: the fixed-update
    # comparison instead: exactly N updates each, validated FIXED_BUDGET_EVALS times.
    fixed_updates: int = 0

    def __post_init__(self) -> None:
        variants = [StudentVariant.parse(name) for name in self.students]
        if self.protocol not in ("psl", "paper"):
            raise ValueError(f"pipeline.protocol must be psl or paper, got {self.protocol!r}")
        framed = [v.name for v in variants if not v.isolated]
        if self.protocol == "paper" and framed:
            raise ValueError(
                f"pipeline.protocol=paper labels each chunk alone, but {', '.join(framed)} would train on "
                f"pooled frame labels: use {framed[0]}-isolated, or set pipeline.protocol=psl"
            )
        for mode in self.transfer:
            if mode not in MODES:
                raise ValueError(f"pipeline.transfer: unknown mode {mode!r}; known: {', '.join(MODES)}")
        if self.label_batch_size < 1 or self.label_top_k < 0:
            raise ValueError("label_batch_size must be >= 1 and label_top_k >= 0")
        if self.fixed_updates < 0 or self.fixed_updates % FIXED_BUDGET_EVALS:
            raise ValueError(
                f"fixed_updates must be 0 or a positive multiple of {FIXED_BUDGET_EVALS}, got {self.fixed_updates}"
            )
        if self.label_amp not in PRECISIONS:
            raise ValueError(f"label_amp must be {KNOWN_PRECISIONS}, got {self.label_amp!r}")

    def budgeted(self, resolved: Resolved, section: str) -> Resolved:
        """`section` (student or baseline) as it trains in this pipeline: as configured, or for
        exactly `fixed_updates` updates without early stopping."""
        if not self.fixed_updates:
            return resolved
        data = copy.deepcopy(resolved.data)
        data.setdefault(section, {}).setdefault("train", {}).update(
            epochs=FIXED_BUDGET_EVALS,
            steps_per_epoch=self.fixed_updates // FIXED_BUDGET_EVALS,
            early_stop_patience=0,
            eval_every_steps=0,
        )
        return Resolved(resolved.source, resolved.profile, data)


@dataclass(frozen=True)
class StudentVariant:
    name: str
    alpha: float
    length_s: float
    sampling: str  # grid or crop
    isolated: bool

    @classmethod
    def parse(cls, name: str) -> StudentVariant:
        match = VARIANT.match(name)
        if not match:
            raise ValueError(
                f"unknown student variant {name!r}: expected psl-<L>s or ts-<L>s, optionally with -crop or "
                "-isolated (e.g. psl-2s, ts-2s, psl-5s-crop, psl-2s-isolated)"
            )
        recipe, length, suffix = match.groups()
        return cls(
            name,
            1.0 if recipe == "psl" else 0.5,
            float(length),
            "crop" if suffix == "crop" else "grid",
            suffix == "isolated",
        )

    def apply(self, resolved: Resolved) -> Resolved:
        """The student section with this variant's chunking and loss weight."""
        data = copy.deepcopy(resolved.data)
        student = data.setdefault("student", {})
        student["alpha"] = self.alpha
        student["chunk"] = {
            **student.get("chunk", {}),
            "length_s": self.length_s,
            "hop_s": self.length_s,
            "sampling": self.sampling,
        }
        return Resolved(resolved.source, resolved.profile, data)


@dataclass
class StageRow:
    stage: str
    variant: str
    run_id: str
    status: str  # ran, resumed or reused
    seconds: float | None
    mAP: float | None = None  # eval mAP: against the complete truth where the data has it
    dprime: float | None = None
    weak_mAP: float | None = None  # against the eval split's weak labels (synthetic data)
    psds1: float | None = None
    best_step: int | None = None  # training steps to the best val mAP, and in all
    steps: int | None = None
    epochs: int | None = None  # passes over the training items (each chunk once, unless budgeted)


def stage_key(stage: str, config: dict, inputs: dict) -> str:
    blob = json.dumps({"stage": stage, "config": config, "inputs": inputs, "code": code_identity()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class Stages:
    """Runs or reuses the stages of one experiment config on one store root."""

    def __init__(self, resolved: Resolved, data: Path | None, *, force: bool = False, progress: bool = True) -> None:
        self.resolved, self.force, self.progress = resolved, force, progress
        teacher_data = build(DataConfig, resolved.data.get("teacher", {}).get("data", {}), f"{resolved.source}: data")
        self.root = data_root(teacher_data, resolved, data)
        self.options = build(PipelineConfig, resolved.data.get("pipeline", {}), f"{resolved.source}: pipeline")
        self.data_override = data
        self.rows: list[StageRow] = []

    def manifests(self, *splits: str) -> dict[str, str]:
        return {split: open_split(self.root, split).manifest_sha256 for split in splits}

    def run_or_reuse(self, stage: str, variant: str, key: str, run: Callable[[Path, bool, dict], object]) -> str:
        """The run id of the stage: a finished run with this key, or a new (or resumed) run."""
        previous = None if self.force else tracking.finished_run(key)
        if previous is not None:
            past = tracking.summary(previous)
            self.rows.append(self._row(stage, variant, past, "reused", past.seconds))
            return previous
        out = OUT_ROOT / f"{variant}-{key}"
        if self.force and out.exists():
            out = out.with_name(f"{out.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        resumed = (out / "last.pt").exists() or (out / "mlflow_run_id").exists()
        start = time.perf_counter()
        result = run(out, (out / "last.pt").exists(), {"psl.stage_key": key})
        seconds = time.perf_counter() - start
        status = "resumed" if resumed else "ran"
        self.rows.append(self._row(stage, variant, tracking.summary(result.run_id), status, seconds))
        return result.run_id

    @staticmethod
    def _row(stage: str, variant: str, run: tracking.RunSummary, status: str, seconds: float | None) -> StageRow:
        run_id, metrics = run.run_id, run.metrics
        if stage == "transfer":  # its eval mAP on the target data
            transferred = [v for k, v in metrics.items() if k.startswith("transfer/") and k.endswith("/mAP")]
            return StageRow(stage, variant, run_id, status, seconds, transferred[0] if transferred else None)
        return StageRow(
            stage,
            variant,
            run_id,
            status,
            seconds,
            metrics.get("test/mAP"),
            metrics.get("test/dprime"),
            metrics.get("test_weak/mAP"),
            metrics.get("test/sed/psds1"),
            _count(metrics.get("train/best_step")),
            _count(metrics.get("train/steps")),
            _count(metrics.get("train/epochs")),
        )

    def _tagger(self, stage: str, variant: str, cfg, train: Callable, **key_inputs) -> str:
        """A training stage, keyed by its config, what else it reads and its splits' manifests."""
        splits = (cfg.data.train_split, cfg.data.val_split, cfg.data.eval_split)
        key = stage_key(stage, {**as_dict(cfg), **key_inputs}, self.manifests(*splits))
        return self.run_or_reuse(
            stage,
            variant,
            key,
            lambda out, resume, tags: train(out=out, data=self.root, resume=resume, progress=self.progress, tags=tags),
        )

    def teacher(self) -> str:
        cfg = build_section(TeacherConfig, self.resolved, "teacher")
        if not cfg.import_:
            return self._tagger("teacher", "teacher", cfg, partial(run_teacher, self.resolved))
        eval_split = cfg.data.eval_split
        key = stage_key("teacher-import", {"sha256": file_sha256(cfg.import_)}, self.manifests(eval_split))
        return self.run_or_reuse(
            "teacher",
            IMPORTED,
            key,
            lambda out, resume, tags: import_teacher(
                Path(cfg.import_), out=out, data=self.root, eval_split=eval_split, tags=tags
            ),
        )

    def labels(self, teacher_run: str, isolated: tuple[float, float] | None = None) -> str:
        student = build_section(StudentConfig, self.resolved, "student")
        splits = (student.data.train_split, student.data.val_split)
        settings = dict(
            teacher=teacher_run,
            splits=splits,
            isolated=isolated,
            top_k=self.options.label_top_k,
            amp=self.options.label_amp,
        )
        key = stage_key("label", settings, self.manifests(*splits))
        variant = "psl-frames" if isolated is None else f"psl-{isolated[0]:g}s-isolated"
        return self.run_or_reuse(
            "label",
            variant,
            key,
            lambda out, resume, tags: run_label(
                teacher_run,
                self.root,
                out,
                splits=splits,
                isolated=isolated,
                top_k=self.options.label_top_k or None,
                batch_size=self.options.label_batch_size,
                amp=self.options.label_amp,
                progress=self.progress,
                tags=tags,
            ),
        )

    def student(self, variant: StudentVariant, labels_run: str) -> str:
        resolved = self.options.budgeted(variant.apply(self.resolved), "student")
        cfg = build_section(StudentConfig, resolved, "student")
        return self._tagger("student", variant.name, cfg, partial(run_student, resolved, labels_run), labels=labels_run)

    def baseline(self) -> str:
        resolved = self.options.budgeted(self.resolved, "baseline")
        cfg = build_section(TaggerStageConfig, resolved, "baseline")
        return self._tagger("baseline", "weak", cfg, partial(run_baseline, resolved))

    def transfer(self, model_run: str, mode: str) -> str:
        cfg = build_section(TransferConfig, self.resolved, "transfer")
        root = Path(cfg.data.root) if cfg.data.root else self.root / "fsd"
        splits = (cfg.data.train_split, cfg.data.val_split, cfg.data.eval_split)
        manifests = {s: open_split(root, s).manifest_sha256 for s in splits}
        key = stage_key("transfer", {**as_dict(cfg), "model": model_run, "mode": mode}, manifests)
        variant = f"{tracking.summary(model_run).tags.get('psl.variant', 'model')} -> {mode}"
        return self.run_or_reuse(
            "transfer",
            variant,
            key,
            lambda out, resume, tags: run_transfer(model_run, root, mode, cfg, out=out, resume=resume, tags=tags),
        )


def prepare_teacher(resolved: Resolved, data: Path | None, *, progress: bool = True) -> str:
    """The teacher run of this config, reused or trained: what `psl label` (and `mlflow run .
    -e label`) does when no teacher is given. Its run is not the entry point's run."""
    with tracking.outside_entry_run():
        return Stages(resolved, data, progress=progress).teacher()


def prepare_labels(resolved: Resolved, data: Path | None, *, progress: bool = True) -> str:
    """The frame-label run a student needs, reusing or running the teacher and `label` stages:
    what `psl student` (and `mlflow run . -e student`) does when no labels are given."""
    with tracking.outside_entry_run():
        stages = Stages(resolved, data, progress=progress)
        return stages.labels(stages.teacher())


def run_label_alone(
    resolved: Resolved, teacher: str | None, data: Path | None, out: Path, **settings
) -> LabelResult | None:
    """`psl label` (and `mlflow run . -e label`): the label stage on its own, `settings` as
    `run_label` takes them. Before any data is generated, a mistyped teacher path is named and a
    tracking server that does not answer is not waited on; with no teacher, this config's own is
    reused or trained first (`prepare_teacher`)."""
    if teacher:
        tracking.tracked_model(teacher)
    else:
        tracking.check_tracking()
    root = data or data_root(DataConfig(), resolved, None)
    if not teacher:
        teacher = prepare_teacher(resolved, root)
    return run_label(teacher, root, out, **settings)


def run_student_alone(
    resolved: Resolved,
    *,
    labels: str | None,
    teacher: str | None,
    out: Path,
    data: Path | None,
    resume: bool,
) -> StageResult | None:
    """`psl student` (and `mlflow run . -e student`): the student stage on stored labels (a
    `psl label` folder or run id) or a teacher labelling online. The references are checked
    before any work: a mistyped path is named as missing (no tracking store is made) and a
    tracking server that does not answer fails in seconds, not after MLflow's retries. Given
    neither, this config's teacher and label stages are reused or run first (`prepare_labels`)."""
    if labels and teacher:
        raise ConfigError("give --labels (stored pseudo labels) or --teacher (online labelling), not both")
    if teacher:
        tracking.tracked_model(teacher)
    if labels:
        tracking.tracked_labels(labels)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 talks to MLflow
        tracking.check_tracking()
    if labels is None and teacher is None:
        labels = prepare_labels(resolved, data)
    return run_student(resolved, labels, teacher=teacher, out=out, data=data, resume=resume)


@dataclass
class PipelineResult:
    run_id: str
    rows: list[StageRow]
    champion: str  # what happened in the registry, in words


def check_configs(resolved: Resolved) -> tuple[PipelineConfig, list[StudentVariant]]:
    """Every stage's config, checked before any work starts."""
    cfg = build(PipelineConfig, resolved.data.get("pipeline", {}), f"{resolved.source}: pipeline")
    variants = [StudentVariant.parse(name) for name in cfg.students]
    teacher = build_section(TeacherConfig, resolved, "teacher")
    if teacher.import_ and not Path(teacher.import_).is_file():
        raise ConfigError(f"teacher.import: {teacher.import_} does not exist (the release's mobilenetv2_mAP40_53.pt)")
    build_section(TaggerStageConfig, cfg.budgeted(resolved, "baseline"), "baseline")
    if cfg.transfer:
        build_section(TransferConfig, resolved, "transfer")
    for variant in variants:
        build_section(StudentConfig, cfg.budgeted(variant.apply(resolved), "student"), "student")
    return cfg, variants


def check_inputs(stages: Stages, cfg: PipelineConfig) -> None:
    """Every split a stage will read exists, or one error lists all that are missing."""
    needed = {}
    sections = {"teacher": TeacherConfig, "student": StudentConfig, "baseline": TaggerStageConfig}
    for section, config_type in sections.items():
        if section == "baseline" and not cfg.baseline:
            continue
        stage = build_section(config_type, stages.resolved, section)
        imported = getattr(stage, "import_", "")  # an imported teacher is only evaluated
        data = stage.data
        for split in (data.eval_split,) if imported else (data.train_split, data.val_split, data.eval_split):
            needed.setdefault(stages.root / split, section)
    if cfg.transfer:
        transfer = build_section(TransferConfig, stages.resolved, "transfer").data
        root = Path(transfer.root) if transfer.root else stages.root / "fsd"
        for split in (transfer.train_split, transfer.val_split, transfer.eval_split):
            needed.setdefault(root / split, "transfer (or skip it: --set pipeline.transfer=[])")
    missing = [f"{path} (for {who})" for path, who in needed.items() if not is_store(path)]
    if missing:
        raise ConfigError("missing clip stores, nothing was run: " + "; ".join(missing))


def run_pipeline(
    resolved: Resolved, data: Path | None = None, *, force: bool = False, progress: bool = True
) -> PipelineResult:
    cfg, variants = check_configs(resolved)
    student_data = build_section(StudentConfig, resolved, "student").data
    name = resolved.profile or resolved.source.stem
    # One pipeline at a time in this folder: two would train the same stages side by side
    # (and, in a fresh folder, race to create the tracking database and the benchmark).
    with exclusive(OUT_ROOT / ".lock", f"the pipeline folder {OUT_ROOT}"):
        tracking.check_tracking()
        stages = Stages(resolved, data, force=force, progress=progress)
        check_inputs(stages, cfg)
        with tracking.stage_run(
            "pipeline",
            run_name=f"pipeline-{name}",
            variant="pipeline",
            dataset=open_split(stages.root, student_data.eval_split).meta.get("dataset", stages.root.name),
            config={"pipeline": as_dict(cfg), "pipeline.config_file": str(resolved.source)},
            out=OUT_ROOT,
        ) as run:
            tracking.log_text(json.dumps(resolved.data, indent=2), "config/resolved.json")
            try:
                students = run_stages(stages, variants, cfg)
            except Exception as error:  # the stage's run failed; the pipeline run fails with its error
                tracking.tag_active_run({"psl.error": str(error)[:4000]})
                raise
            registered = cfg.register_as and students
            champion = crown(stages, students, cfg, student_data.val_split) if registered else "no registration"
            log_results(stages.rows, champion)
            return PipelineResult(run.info.run_id, stages.rows, champion)


def run_stages(stages: Stages, variants: list[StudentVariant], cfg: PipelineConfig) -> list[str]:
    """teacher -> labels (frames, and isolated per isolated variant) -> students -> baseline
    -> transfer of the baseline and the students; returns the students' run ids."""
    teacher = stages.teacher()
    frame_labels = None
    students = []
    for variant in variants:
        if variant.isolated:
            labels = stages.labels(teacher, (variant.length_s, variant.length_s))
        else:
            frame_labels = frame_labels or stages.labels(teacher)
            labels = frame_labels
        students.append(stages.student(variant, labels))
    trained = ([stages.baseline()] if cfg.baseline else []) + students
    for mode in cfg.transfer:
        for run in trained:
            stages.transfer(run, mode)
    return students


def crown(stages: Stages, students: list[str], cfg: PipelineConfig, val_split: str) -> str:
    """Registers the student with the best val mAP and moves the alias to it when it beats the
    current holder on the same val split (the holder is scored again if it was validated on
    other data). The eval split's mAP is reported, never used to decide."""
    student_cfg = build_section(StudentConfig, stages.resolved, "student")
    if not student_cfg.tracking.log_model:
        return "not registered: the students do not log a model (student.tracking.log_model is false)"
    best = max((tracking.summary(r) for r in students), key=lambda run: run.metrics.get(BEST_VAL, float("-inf")))
    best_val, best_eval = best.metrics.get(BEST_VAL, float("-inf")), best.metrics.get("test/mAP", float("nan"))
    val_manifest = open_split(stages.root, val_split).manifest_sha256
    tags = {
        "psl.val_manifest_sha256": val_manifest,
        "val_mAP": f"{best_val:.6f}",
        "test_mAP": f"{best_eval:.6f}",
        "psl.variant": best.tags.get("psl.variant", ""),
    }
    version = tracking.register(best.run_id, cfg.register_as, tags)
    holder = tracking.alias_holder(cfg.register_as, cfg.alias)
    label = f"{cfg.register_as} v{version}"
    scores = f"val mAP {best_val:.4f}, eval mAP {best_eval:.4f}"
    if holder is None:
        tracking.set_alias(cfg.register_as, cfg.alias, version)
        return f"{label} is the first {cfg.alias} ({scores})"
    if holder.version == version:
        return f"{label} already is {cfg.alias}"
    if holder.tags.get("psl.val_manifest_sha256") == val_manifest and "val_mAP" in holder.tags:
        holder_val = float(holder.tags["val_mAP"])
    else:
        holder_val = _score(holder.run_id, stages.root, val_split)
        if holder_val is None:
            return f"{label} registered; {cfg.alias} stays v{holder.version}: it tags other classes than this data"
    if best_val > holder_val:
        tracking.set_alias(cfg.register_as, cfg.alias, version)
        return f"{label} is now {cfg.alias}: {scores}; v{holder.version}'s val mAP {holder_val:.4f}"
    return f"{label} registered; {cfg.alias} stays v{holder.version} (val mAP {holder_val:.4f} >= {best_val:.4f})"


def _score(run_id: str, root: Path, split: str) -> float | None:
    """mAP of a run's best checkpoint on `split` of `root`; None if it tags other classes."""
    store = open_split(root, split)
    device = default_device(Distributed())
    opened = open_tagger(run_id, device)
    if opened.config["class_ids"] != list(store.classes.ids):
        return None
    return evaluate(opened.model, store, device=device)[0].mAP


def results_table(rows: list[StageRow]) -> str:
    def number(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    dprime = "d'"
    lines = [
        f"{'stage':<9} {'variant':<18} {'run id':<32} {'status':<8} {'eval mAP':>8} {'weak mAP':>8} "
        f"{dprime:>6} {'PSDS1':>6} {'best/steps':>11} {'epochs':>6} {'wall':>7}"
    ]
    for r in rows:
        wall = "-" if r.seconds is None else f"{int(r.seconds // 60)}:{int(r.seconds % 60):02d}"
        steps = "-" if r.steps is None else f"{r.best_step}/{r.steps}"
        lines.append(
            f"{r.stage:<9} {r.variant:<18} {r.run_id:<32} {r.status:<8} {number(r.mAP, 4):>8} "
            f"{number(r.weak_mAP, 4):>8} {number(r.dprime, 3):>6} {number(r.psds1, 3):>6} {steps:>11} "
            f"{'-' if r.epochs is None else r.epochs:>6} {wall:>7}"
        )
    return "\n".join(lines)


def _count(value: float | None) -> int | None:
    return None if value is None else int(value)


def log_results(rows: list[StageRow], champion: str) -> None:
    """The results table and figures on the pipeline run: test mAP of every tagger, transfer
    mAP, and per-class AP of teacher, baseline and best student. (The stage runs carry the
    metrics: copies here would get charts of their own in the UI's chart view.)"""
    from psl.plots import per_class_comparison_figure, results_figure

    tracking.log_text(results_table(rows) + f"\n\nregistry: {champion}\n", "results.txt")
    trained = [r for r in rows if r.stage in ("teacher", "baseline", "student") and r.mAP is not None]
    transferred = [r for r in rows if r.stage == "transfer" and r.mAP is not None]
    figure = results_figure([r.variant for r in trained], [r.mAP for r in trained], "test mAP (eval split)")
    tracking.log_figure(figure, "test_mAP.png")
    if transferred:
        names = [r.variant for r in transferred]
        tracking.log_figure(results_figure(names, [r.mAP for r in transferred], "transfer mAP"), "transfer_mAP.png")
    students = [r for r in trained if r.stage == "student"]
    compared = [r for r in trained if r.stage != "student"] + ([max(students, key=lambda r: r.mAP)] if students else [])
    if len(compared) > 1:
        tables = {r.variant: tracking.per_class_ap(r.run_id) for r in compared}
        names = next(iter(tables.values()))[0]
        figure = per_class_comparison_figure(names, {v: ap for v, (_, ap) in tables.items()})
        tracking.log_figure(figure, "per_class_ap.png")
    tracking.tag_active_run({"psl.children": ",".join(r.run_id for r in rows)})
