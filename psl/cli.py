"""The `psl` command."""

from __future__ import annotations

import enum
import errno
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

import psl
from psl.errors import PslError
from psl.precision import Precision

if TYPE_CHECKING:  # imported by the commands that need them: `psl --help` stays quick
    from psl.stages.label import LabelResult


def _fail(message: str) -> None:
    """Ends the command with one line (a library's message may span several) and exit code 2."""
    typer.echo(f"error: {'; '.join(line.strip() for line in message.splitlines() if line.strip())}", err=True)
    raise typer.Exit(2)


# Failures of the machine rather than of the input: reported in one line with the path.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


class _Commands(TyperGroup):
    """psl's command group, the one place where failures become messages: a PslError (an
    expected failure: bad input, a busy output, a silent tracking server) and a full,
    read-only or forbidden folder end every command with one line and exit code 2 (the
    finished work is kept: a re-run continues from it). Anything else is a bug and keeps its
    traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PslError as error:
            _fail(str(error))
        except OSError as error:
            if error.errno not in DISK_ERRORS:
                raise
            _fail(f"{error}; what was finished is kept, run the command again once this is fixed")


app = typer.Typer(
    cls=_Commands,
    help="Pseudo strong labels for large-scale weakly supervised audio tagging.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
bench_app = typer.Typer(help="Benchmarks that compare psl with a baseline measured in the same run.")
app.add_typer(bench_app, name="bench")
data_app = typer.Typer(help="Build and inspect clip stores: the synthetic benchmark, AudioSet, FSD50K, FSDKaggle2018.")
app.add_typer(data_app, name="data")


class DeviceChoice(enum.StrEnum):
    CPU = "cpu"
    CUDA = "cuda"
    AUTO = "auto"


class LabelMode(enum.StrEnum):
    FRAMES = "frames"
    ISOLATED = "isolated"


class TransferMode(enum.StrEnum):  # psl.stages.transfer.MODES, not imported from there: that loads torch
    LINEAR = "linear"
    FINETUNE = "finetune"


AMP = typer.Option(Precision.BF16, help="Autocast precision (fp16: for CUDA).")
WORKERS = typer.Option(0, min=0, help="Decoding processes (0: one per core, at most 8).")
MIN_SECONDS = typer.Option(0.1, min=0.0, help="Clips shorter than this are skipped.")
MAX_SECONDS = typer.Option(600.0, min=0.0, help="Clips longer than this are skipped (read from the header).")
REBUILD = typer.Option(
    False,
    "--force",
    help="Rebuild the splits in --out though they exist (finished or interrupted); without it, a split "
    "built from other inputs is refused.",
)


class Terminated(SystemExit):
    """SIGTERM, raised where the command is: the MLflow runs it passes through are marked
    KILLED (psl.tracking.stage_run), and the process still exits as terminated, 128 + 15."""


def _stop_on_sigterm() -> None:
    """Turns SIGTERM into Terminated in this process only. Processes forked from it (data
    loaders, decoding pools) get SIGTERM's default back as they start: their parent stops them
    with it and joins them, and with a Python handler a pool worker could stay blocked on the
    pool's queue lock (the handler runs between bytecodes), hanging the join."""
    import os
    import signal

    def handle(signum: int, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        raise Terminated(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, handle)
    os.register_at_fork(after_in_child=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))


def run() -> None:
    """The `psl` command (expected failures end it with one line: see _Commands). SIGTERM
    ends it with its MLflow runs KILLED."""
    _stop_on_sigterm()
    try:
        app(prog_name="psl")
        return
    except Terminated as stop:
        code = stop.code  # said below, once the command's frames and progress bars are let go
    _say("stopped by SIGTERM; MLflow runs it had started are marked KILLED, finished work is kept for a rerun")
    raise Terminated(code)


def _say(line: str) -> None:
    """A line on stderr that a closed stderr does not turn into another error."""
    try:
        typer.echo(f"psl: {line}", err=True)
    except OSError:
        pass


def _report_ingest(results) -> None:
    for split, result in results.items():
        resumed = f", {result.resumed} resumed from an earlier run" if result.resumed else ""
        typer.echo(
            f"{split}: {len(result.store)} clips in {result.store.path} ({len(result.skipped)} skipped{resumed})"
        )
        if result.skipped:
            typer.echo(f"  skipped files and reasons: {result.report}")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"psl {psl.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Pseudo strong labels for large-scale weakly supervised audio tagging."""


@bench_app.command("ops")
def bench_ops(
    batch: int = typer.Option(32, min=1, help="Clips per call."),
    seconds: float = typer.Option(10.0, min=0.1, help="Clip duration in seconds (16 kHz)."),
    threads: int = typer.Option(0, min=0, help="CPU threads for psl and torchaudio alike (0: torch's default)."),
    device: DeviceChoice = typer.Option(DeviceChoice.AUTO, help="auto: cpu, and cuda when present."),
    repeats: int = typer.Option(7, min=1, help="Interleaved repetitions; medians are reported."),
) -> None:
    """log_mel against torchaudio and chunk_pool against its pure-torch reference."""
    import torch

    from psl.bench import ops as bench
    from psl.bench.timing import format_table

    if threads:
        torch.set_num_threads(threads)
    if device is DeviceChoice.AUTO:
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [torch.device(_present(device))]
    _bench_header()
    typer.echo(format_table(bench.run(devices, batch, seconds, repeats)))


def _present(device: DeviceChoice) -> str:
    """cpu, or cuda where a CUDA device is available; auto: cuda when present, else cpu."""
    import torch

    if device is DeviceChoice.AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device is DeviceChoice.CUDA and not torch.cuda.is_available():
        raise typer.BadParameter("no CUDA device is available", param_hint="--device")
    return device.value


def _bench_header() -> None:
    import torch

    from psl import ops

    native = "native kernels" if ops.native_available() else "NO native kernels (pure-torch fallback)"
    typer.echo(f"psl {psl.__version__}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {native}")
    if torch.cuda.is_available():
        typer.echo(f"GPU: {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}")


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., help="Store root to create (or resume)."),
    profile: str = typer.Option("demo", help="experiments/synth-PROFILE.yaml sets the sizes."),
    config: Path | None = typer.Option(None, help="A YAML file with a `synth:` section, instead of --profile."),
    seed: int | None = typer.Option(None, help="Override the profile's seed."),
    workers: int = WORKERS,
) -> None:
    """Generate the synthetic weakly labelled benchmark with strong truth."""
    import dataclasses

    from psl.config import profile_path
    from psl.data.synth.config import load_synth_config
    from psl.data.synth.generate import generate

    cfg = load_synth_config(config or profile_path(profile))
    if seed is not None:
        cfg = dataclasses.replace(cfg, seed=seed)
    stores = generate(cfg, out, workers=workers or None)
    for name, store in stores.items():
        typer.echo(f"{name}: {len(store)} clips")
    typer.echo(f"dataset card: {out / 'dataset_card.md'}")


@data_app.command("audioset")
def data_audioset(
    segments: list[Path] = typer.Option(
        ..., help="balanced_train_segments.csv, unbalanced_train_segments.csv, eval_segments.csv (repeatable)."
    ),
    labels: Path = typer.Option(..., help="class_labels_indices.csv"),
    audio: Path = typer.Option(
        ..., help="Folder with the audio files ({YTID}_{start}_{end}.* or {YTID}.*), searched recursively."
    ),
    out: Path = typer.Option(..., help="Store root to create (or resume): splits full, balanced, val, eval."),
    val_fraction: float = typer.Option(0.05, min=0.0, max=0.5, help="Share of balanced_train held out as `val`."),
    strong: list[Path] = typer.Option(
        [], help="A strong-label TSV (audioset_{train,eval}_strong.tsv) to attach to its clips (repeatable)."
    ),
    force: bool = REBUILD,
    workers: int = WORKERS,
    min_seconds: float = MIN_SECONDS,
    max_seconds: float = MAX_SECONDS,
) -> None:
    """Ingest AudioSet segment lists and downloaded audio."""
    from psl.data.audioset import ingest_audioset

    results = ingest_audioset(
        segments,
        labels,
        audio,
        out,
        val_fraction=val_fraction,
        strong=strong,
        force=force,
        workers=workers or None,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
    )
    _report_ingest(results)
    report = next((result.strong for result in results.values() if result.strong), None)
    if report is not None:
        typer.echo(report.summary())


@data_app.command("fsd50k")
def data_fsd50k(
    root: Path = typer.Option(..., help="Folder with FSD50K.ground_truth/, FSD50K.dev_audio/, FSD50K.eval_audio/."),
    out: Path = typer.Option(..., help="Store root to create (or resume): splits train, val, eval."),
    force: bool = REBUILD,
    workers: int = WORKERS,
    min_seconds: float = MIN_SECONDS,
    max_seconds: float = MAX_SECONDS,
) -> None:
    """Ingest FSD50K (200 classes, multi-label)."""
    from psl.data.fsd import ingest_fsd50k

    results = ingest_fsd50k(
        root, out, force=force, workers=workers or None, min_seconds=min_seconds, max_seconds=max_seconds
    )
    _report_ingest(results)


@data_app.command("fsdkaggle2018")
def data_fsdkaggle2018(
    root: Path = typer.Option(
        ..., help="Folder with FSDKaggle2018.meta/, FSDKaggle2018.audio_train/, FSDKaggle2018.audio_test/."
    ),
    out: Path = typer.Option(..., help="Store root to create (or resume): splits train, val, eval."),
    val_fraction: float = typer.Option(0.1, min=0.0, max=0.5, help="Share of the train set held out as `val`."),
    force: bool = REBUILD,
    workers: int = WORKERS,
    min_seconds: float = MIN_SECONDS,
    max_seconds: float = MAX_SECONDS,
) -> None:
    """Ingest FSDKaggle2018 (41 classes, single-label, manually_verified kept)."""
    from psl.data.fsd import ingest_fsdkaggle2018

    results = ingest_fsdkaggle2018(
        root,
        out,
        val_fraction=val_fraction,
        force=force,
        workers=workers or None,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
    )
    _report_ingest(results)


@data_app.command("info")
def data_info(path: Path = typer.Argument(..., help="A store root or one split.")) -> None:
    """Split sizes, durations, class count and label statistics."""
    from psl.data.info import describe

    typer.echo(describe(path))


@bench_app.command("metrics")
def bench_metrics(
    clips: int = typer.Option(20000, min=2, help="Clips scored (AudioSet's eval set: ~20,000)."),
    classes: int = typer.Option(527, min=1, help="Classes (AudioSet: 527)."),
    repeats: int = typer.Option(3, min=1, help="Interleaved repetitions; medians are reported."),
) -> None:
    """psl's mAP and ROC-AUC against scikit-learn's on the same scores (checked equal first)."""
    from psl.bench import metrics as bench
    from psl.bench.timing import format_table

    typer.echo(format_table(bench.bench_metrics(clips, classes, repeats)))


@bench_app.command("augment")
def bench_augment(
    batch: int = typer.Option(32, min=1, help="Clips per training batch."),
    seconds: list[float] = typer.Option([2.0, 10.0], min=0.1, help="Crop durations (repeat the option)."),
    repeats: int = typer.Option(15, min=1, help="Interleaved repetitions; medians are reported."),
) -> None:
    """psl's SpecAugment against the same masks drawn by torchaudio's mask_along_axis_iid."""
    from psl.bench import augment as bench
    from psl.bench.timing import format_table

    _bench_header()
    typer.echo(format_table(bench.bench_augment(batch, seconds, repeats)))


@bench_app.command("student")
def bench_student(
    data: Path | None = typer.Option(
        None, help="A split to train on (default: a temporary store of random 10-s clips)."
    ),
    clips: int = typer.Option(64, min=1, help="Clips in the temporary store."),
    chunk: float = typer.Option(2.0, min=0.1, help="Chunk length in seconds."),
    batch: int = typer.Option(32, min=1),
    steps: int = typer.Option(4, min=1, help="Training steps per measurement."),
    width: float = typer.Option(0.35, min=0.1, help="MobileNetV2 width of teacher and student."),
    workers: int = typer.Option(1, min=0, help="DataLoader workers."),
    amp: Precision = AMP,
    repeats: int = typer.Option(3, min=1, help="Interleaved repetitions; medians are reported."),
) -> None:
    """Student step with stored pseudo labels vs constant targets vs the teacher run online."""
    from psl.bench import student as bench
    from psl.bench.timing import format_table

    typer.echo(format_table(bench.run(data, clips, chunk, batch, steps, width, workers, amp.value, repeats)))


@bench_app.command("train")
def bench_train(
    device: DeviceChoice = typer.Option(DeviceChoice.AUTO, help="auto: cuda when present, else cpu."),
    data: Path | None = typer.Option(None, help="A split to use (default: a temporary store of random 10-s clips)."),
    clips: int | None = typer.Option(None, min=1, help="Clips in the temporary store [cuda: 4096, cpu: 24]."),
    classes: int = typer.Option(527, min=1, help="Classes of the temporary store (AudioSet: 527)."),
    width: float = typer.Option(1.0, min=0.1, help="MobileNetV2 width."),
    batch: int | None = typer.Option(None, min=1, help="Batch size [cuda: 256, cpu: 8]."),
    steps: int | None = typer.Option(None, min=1, help="Training steps per measurement [cuda: 20, cpu: 3]."),
    workers: int | None = typer.Option(None, min=0, help="DataLoader workers [cuda: up to 8, cpu: 0]."),
    amp: Precision = AMP,
    repeats: int = typer.Option(3, min=1, help="Alternating repetitions; medians are reported."),
) -> None:
    """Teacher and student training and `psl label`, end to end, against the model alone."""
    import torch

    from psl.bench import train as bench
    from psl.bench.timing import format_table
    from psl.trainer import loader_workers

    device = _present(device)
    gpu = device == "cuda"
    _bench_header()
    rows = bench.run(
        torch.device(device),
        data,
        clips or (4096 if gpu else 24),
        classes,
        width,
        batch or (256 if gpu else 8),
        steps or (20 if gpu else 3),
        workers if workers is not None else loader_workers(torch.device(device)),
        amp.value,
        repeats,
    )
    typer.echo(format_table(rows))


@bench_app.command("data")
def bench_data(
    data: Path | None = typer.Option(None, help="A split to read (default: a temporary store of random 10-s clips)."),
    clips: int = typer.Option(512, min=1, help="Clips in the temporary store."),
    seconds: float = typer.Option(10.0, min=0.5, help="Clip length of the temporary store."),
    crop: float = typer.Option(2.0, min=0.1, help="Crop length in seconds."),
    batch: int = typer.Option(64, min=1),
    workers: int = typer.Option(2, min=0, help="DataLoader workers (0: single process only)."),
    budget: float = typer.Option(2.0, min=0.1, help="Seconds per measurement."),
) -> None:
    """Read throughput of whole clips and random crops, decoded to float32."""
    from psl.bench import data as bench
    from psl.bench.timing import format_table

    typer.echo(format_table(bench.run(data, clips, seconds, crop, batch, workers, budget)))


PROFILE = typer.Option(None, help="Synthetic profile: experiments/synth-PROFILE.yaml (default: demo).")
CONFIG = typer.Option(None, help="Experiment YAML file (instead of --profile).")
# A string, not a Path: MLproject entry points pass an empty `data` for "the synthetic benchmark".
DATA = typer.Option(None, help="Store root to train and evaluate on (default: the profile's synthetic benchmark).")


def _data_path(data: str | None) -> Path | None:
    return Path(data) if data else None


SET = typer.Option([], "--set", help="Override a config key of this stage: --set train.epochs=3 (repeatable).")


def _run_training(section: str, profile, config, data, overrides, out, resume, run) -> None:
    """What `psl teacher`, `psl baseline` and `psl student` share: config, output folder, errors, summary."""
    from psl.stages.common import default_out, resolve_config

    resolved = resolve_config(profile, config, overrides, section)
    out = out or default_out(section, resolved)
    result = run(resolved, out=out, data=_data_path(data), resume=resume)
    if result is not None and result.test is None:  # an imported teacher, evaluated on nothing
        typer.echo(f"{section} run {result.run_id}: {result.best_checkpoint}")
    elif result is not None:
        t = result.test
        typer.echo(
            f"{section} run {result.run_id}: test mAP {t.mAP:.4f}, AUC {t.auc:.4f}, d' {t.dprime:.3f}, "
            f"micro mAP {t.micro_mAP:.4f} ({result.seconds:.0f} s of training); best checkpoint {result.best_checkpoint}"
        )


OUT = typer.Option(None, help="Checkpoint folder (default: runs/STAGE-PROFILE).")
RESUME = typer.Option(False, "--resume", help="Continue the interrupted run in --out.")


teacher_app = typer.Typer(
    help="Train the teacher on the large weakly labelled split and evaluate it on `eval`; "
    "or `psl teacher import FILE`: the authors' released teacher instead.",
    invoke_without_command=True,
)
app.add_typer(teacher_app, name="teacher")


@teacher_app.callback()
def teacher(
    ctx: typer.Context,
    profile: str | None = PROFILE,
    config: Path | None = CONFIG,
    data: str | None = DATA,
    set_: list[str] = SET,
    out: Path | None = OUT,
    resume: bool = RESUME,
) -> None:
    """Train the teacher on the large weakly labelled split; evaluate it on `eval`."""
    if ctx.invoked_subcommand is not None:
        return
    from psl.stages.weak import run_teacher

    _run_training("teacher", profile, config, data, set_, out, resume, run_teacher)


@teacher_app.command("import")
def teacher_import(
    file: Path = typer.Argument(..., help="The release's mobilenetv2_mAP40_53.pt (Zenodo record 6003838)."),
    data: str | None = typer.Option(
        None, help="An AudioSet store root: the teacher is also evaluated on its `eval` split."
    ),
    out: Path = typer.Option(Path("runs") / "teacher-imported", help="Where the psl checkpoint is written."),
) -> None:
    """Import the authors' released teacher (40.53 mAP) as a psl teacher run, for `psl label`,
    `psl evaluate`, `psl student --teacher` and `psl pipeline --set teacher.import=FILE`."""
    from psl.stages.weak import import_teacher

    result = import_teacher(file, out=out, data=_data_path(data))
    scored = f"; eval mAP {result.test.mAP:.4f}, d' {result.test.dprime:.3f}" if result.test else ""
    typer.echo(
        f"teacher run {result.run_id} (teacher-imported, sha256 {result.sha256[:12]}): {result.best_checkpoint}{scored}"
    )


@app.command("baseline")
def baseline(
    profile: str | None = PROFILE,
    config: Path | None = CONFIG,
    data: str | None = DATA,
    set_: list[str] = SET,
    out: Path | None = OUT,
    resume: bool = RESUME,
) -> None:
    """Train the student network on the small split's weak clip labels (the paper's weak baseline)."""
    from psl.stages.weak import run_baseline

    _run_training("baseline", profile, config, data, set_, out, resume, run_baseline)


@app.command("student")
def student(
    labels: str | None = typer.Option(
        None,
        help="Pseudo labels: a folder written by `psl label`, or its MLflow run id (default: "
        "reuse or make them with this config's teacher, as `psl pipeline` does).",
    ),
    teacher: str | None = typer.Option(
        None,
        help="Instead of --labels: label online with this teacher (checkpoint "
        "or run id), inside every step, as the original release did.",
    ),
    profile: str | None = PROFILE,
    config: Path | None = CONFIG,
    data: str | None = DATA,
    set_: list[str] = SET,
    out: Path | None = OUT,
    resume: bool = RESUME,
) -> None:
    """Train a student on chunks with pseudo strong labels (alpha = 1: PSL; 0.5: teacher-student)."""
    import functools

    from psl.stages.pipeline import run_student_alone

    labels, teacher = labels or None, teacher or None
    if labels is None and teacher is None:
        typer.echo("no --labels or --teacher: reusing (or running) the teacher and label stages of this config")
    run = functools.partial(run_student_alone, labels=labels, teacher=teacher)
    _run_training("student", profile, config, data, set_, out, resume, run)


@app.command("pipeline")
def pipeline_command(
    profile: str | None = PROFILE,
    config: Path | None = CONFIG,
    data: str | None = DATA,
    set_: list[str] = typer.Option(
        [], "--set", help="Override any key of the config file: --set teacher.train.epochs=3 (repeatable)."
    ),
    seed: int | None = typer.Option(None, help="Training seed of teacher, baseline and students alike."),
    force: bool = typer.Option(False, "--force", help="Run every stage again, even where a finished run matches."),
) -> None:
    """The whole method as nested MLflow runs: data, teacher, label, students + weak baseline, transfer, registry."""
    from psl.stages.common import resolve_config
    from psl.stages.pipeline import results_table, run_pipeline
    from psl.tracking import experiment_id, tracking_uri

    if seed is not None:
        set_ = [*set_, *(f"{section}.train.seed={seed}" for section in ("teacher", "baseline", "student"))]
    resolved = resolve_config(profile, config, set_, None)
    result = run_pipeline(resolved, _data_path(data), force=force)
    typer.echo(f"\npipeline run {result.run_id}\n{results_table(result.rows)}\nregistry: {result.champion}")
    uri = tracking_uri()
    server = f"mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite") else f"open {uri}"
    typer.echo(
        f"\nCompare the runs in the MLflow UI: {server}, then open "
        f"http://127.0.0.1:5000/#/experiments/{experiment_id()}/runs/{result.run_id}, or select the runs of "
        "the experiment's table and press Compare."
    )


@app.command("evaluate")
def evaluate_command(
    model: str = typer.Option(
        ...,
        help="A checkpoint file, the MLflow run id of a stage that logged one, or a registered "
        "model: models:/NAME@ALIAS (e.g. models:/psl-student@champion) or models:/NAME/VERSION.",
    ),
    data: str | None = typer.Option(None, help="Store root holding the split (default: the profile's benchmark)."),
    profile: str | None = PROFILE,
    split: str = typer.Option("eval", help="Split to evaluate on (full clips)."),
    batch_size: int = typer.Option(32, min=1),
    amp: Precision = AMP,
) -> None:
    """mAP, ROC-AUC, d', micro mAP and per-class AP of a trained tagger; logged as an `evaluate` run."""
    from psl.stages.common import DataConfig, data_root, resolve_config
    from psl.stages.evaluate import run_evaluate
    from psl.tracking import tracked_model

    tracked_model(model)  # a mistyped checkpoint path is named as missing before anything starts
    root = _data_path(data) or data_root(DataConfig(), resolve_config(profile, None, [], None), None)
    result = run_evaluate(model, root, split, batch_size=batch_size, amp=amp.value)
    m = result.metrics
    typer.echo(
        f"evaluate run {result.run_id} on {split}: mAP {m.mAP:.4f}, AUC {m.auc:.4f}, d' {m.dprime:.3f}, micro mAP {m.micro_mAP:.4f}"
    )


@app.command("transfer")
def transfer_command(
    model: str = typer.Option(..., help="A checkpoint file, a run id, or a registered model (models:/NAME@ALIAS)."),
    mode: TransferMode = typer.Option(
        TransferMode.LINEAR, help="linear: frozen model, linear probe; finetune: the whole network."
    ),
    data: str | None = typer.Option(
        None, help="Store root with train/val/eval (FSD50K, FSDKaggle2018; default: the profile's synthetic FSD set)."
    ),
    profile: str | None = PROFILE,
    config: Path | None = CONFIG,
    set_: list[str] = SET,
    out: Path | None = typer.Option(None, help="finetune: checkpoint folder (default: runs/transfer-MODE-PROFILE)."),
    resume: bool = typer.Option(False, "--resume", help="finetune: continue an interrupted fine-tuning in --out."),
) -> None:
    """Transfer a trained tagger to another dataset: linear probe or fine-tuning; logged as a `transfer` run."""
    from psl.stages.common import build_section, data_root, default_out, resolve_config
    from psl.stages.transfer import TransferConfig, run_transfer
    from psl.tracking import check_tracking, tracked_model

    tracked_model(model)  # a mistyped path is named as missing: no tracking store, no data made
    check_tracking()  # a tracking server that does not answer fails in seconds, before the data
    resolved = resolve_config(profile, config, set_, "transfer")
    cfg = build_section(TransferConfig, resolved, "transfer")
    root = _data_path(data) or (Path(cfg.data.root) if cfg.data.root else data_root(cfg.data, resolved, None) / "fsd")
    out = out or default_out(f"transfer-{mode.value}", resolved)
    result = run_transfer(model, root, mode.value, cfg, out=out, resume=resume)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    typer.echo(f"transfer run {result.run_id} ({mode}, {root}): {shown}")


@app.command("analyse")
def analyse_command(
    labels: str = typer.Option(..., help="Pseudo labels: a folder written by `psl label`, or its MLflow run id."),
    data: str | None = DATA,
    profile: str | None = PROFILE,
    split: str = typer.Option("balanced", help="The labelled split to analyse."),
    threshold: float = typer.Option(0.5, min=0.0, max=1.0, help="Pseudo tag: some frame reaches this."),
    out: Path = typer.Option(Path("runs/analysis"), help="Folder for the figures."),
) -> None:
    """The missing-label analysis of a label store (also logged by every `psl label` run)."""
    from psl.stages.analyse import run_analysis
    from psl.stages.common import DataConfig, data_root, resolve_config
    from psl.tracking import check_tracking, tracked_labels

    # Before any data is generated: a mistyped folder is named, a silent server is not waited on.
    if tracked_labels(labels):
        check_tracking()
    root = _data_path(data) or data_root(DataConfig(), resolve_config(profile, None, [], None), None)
    report = run_analysis(labels, root, split, threshold, out)
    for name, value in report.metrics.items():
        typer.echo(f"{name:<24} {value:.4f}")
    typer.echo(f"figures in {out}/")


@app.command("tag")
def tag_command(
    audio: list[Path] = typer.Argument(..., help="Audio files (any rate, channels and format libsndfile reads)."),
    model: str = typer.Option(
        "models:/psl-student@champion",
        help="A checkpoint file, a run id, or a registered model (models:/NAME@ALIAS).",
    ),
    top: int = typer.Option(5, min=1, help="Tags to print per file."),
    hop: float = typer.Option(1.0, min=0.32, help="Timeline step in seconds."),
    threshold: float = typer.Option(0.5, min=0.0, max=1.0, help="Timeline: tags whose frame score reaches this."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Tags and a timeline for audio files, with a trained tagger (CPU is fine)."""
    import json

    from psl.checkpoints import open_tagger
    from psl.tagging import as_text, tag_files
    from psl.tracking import check_tracking, tracked_model

    if tracked_model(model):  # a run or registry model: fail in seconds if MLflow does not answer
        check_tracking()
    opened = open_tagger(model)
    results = []
    for result in tag_files(opened.model, opened.config["class_names"], audio, top=top, hop_s=hop, threshold=threshold):
        results.append(result)
        if "error" in result:
            typer.echo(f"error: {result['error']}", err=True)
        elif not json_output:
            typer.echo(as_text(result, hop, threshold))
    if json_output:  # allow_nan=False: never NaN, which is not JSON (scores are checked finite)
        typer.echo(json.dumps({"model": model, "files": results}, indent=2, allow_nan=False))
    if any("error" in result for result in results):
        raise typer.Exit(2)


@app.command("label")
def label_command(
    teacher: str | None = typer.Option(
        None,
        help="The teacher: a checkpoint file, the MLflow run id of a `teacher` run or a registered model "
        "(default: reuse or train the profile's teacher, as `psl pipeline` does).",
    ),
    data: str | None = DATA,
    profile: str | None = PROFILE,
    split: list[str] = typer.Option(["balanced", "val"], help="Splits to label (repeatable)."),
    out: Path | None = typer.Option(None, help="Label store folder (default: runs/labels-PROFILE)."),
    mode: LabelMode = typer.Option(
        LabelMode.FRAMES,
        help="frames: store the teacher's frames (any chunking later); isolated: the "
        "paper's exact mode, the teacher run on each grid chunk alone.",
    ),
    chunk: float = typer.Option(2.0, min=0.1, help="isolated mode: chunk length L in seconds."),
    hop: float | None = typer.Option(None, min=0.1, help="isolated mode: chunk hop H in seconds (default: L)."),
    top_k: int = typer.Option(
        0, min=0, help="Keep only each frame's k most likely classes (0: all; for large class counts)."
    ),
    batch_size: int = typer.Option(32, min=1),
    amp: Precision = AMP,
    workers: int | None = typer.Option(
        None, min=0, help="Processes reading clips ahead of the teacher (default: 0 on a CPU, up to 8 per GPU)."
    ),
    verify: Path | None = typer.Option(
        None,
        "--verify",
        help="Only check the label store(s) in this folder: every file against the checksums recorded "
        "when it was written (reads them whole); other options are ignored.",
    ),
) -> None:
    """Run the teacher once over the student's clips and store its frame probabilities (pseudo labels)."""
    from psl.labels import verify_report
    from psl.stages.common import default_out, resolve_config
    from psl.stages.pipeline import run_label_alone

    if verify is not None:
        typer.echo("\n".join(verify_report(verify)))
        return
    resolved = resolve_config(profile, None, [], None)
    out = out or default_out("labels", resolved)
    if not teacher:
        typer.echo("no --teacher: reusing (or training) the teacher of this profile, as `psl pipeline` does")
    result = run_label_alone(
        resolved,
        teacher or None,
        _data_path(data),
        out,
        splits=tuple(split),
        isolated=(chunk, hop or chunk) if mode is LabelMode.ISOLATED else None,
        top_k=top_k or None,
        batch_size=batch_size,
        amp=amp.value,
        workers=workers,
    )
    if result is not None:  # None: a torchrun rank other than 0
        _print_labelled(result, out)


def _print_labelled(result: LabelResult, out: Path) -> None:
    counts = ", ".join(f"{split}: {len(store.ids)} clips" for split, store in result.stores.items())
    typer.echo(f"label run {result.run_id}: {counts} in {out}")
    for name, value in result.summary.items():
        typer.echo(f"  {name} = {value:.3f}")
