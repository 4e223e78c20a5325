"""MLflow, in one place: the only module of psl that imports mlflow.

Conventions (DESIGN.md section 7): one run per stage, tagged `psl.stage`, `psl.variant`
and `psl.dataset`; the resolved config as params; metrics named alike across stages
(`train/loss`, `val/mAP`, `test/mAP`, ...); artifacts for configs, tables, plots and the
best checkpoint. Tracking goes where MLflow's default points (`sqlite:///mlflow.db` in
the working directory) unless MLFLOW_TRACKING_URI says otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import urllib.error
import urllib.request
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import mlflow
import numpy as np

from psl.errors import MissingInput, TrackingError
from psl.files import naming, write_atomic
from psl.locks import taking_turns
from psl.provenance import code_identity

EXPERIMENT = "psl"
# One INFO line per run start and stop drowns the progress bars.
logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def health_timeout() -> float:
    """Seconds a tracking server gets to answer /health before a command gives up: short, as
    MLflow's own client retries a dead server for minutes and waits on a mute one for longer."""
    text = os.environ.get("PSL_TRACKING_TIMEOUT", "5")
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < 3600:  # also refuses nan
        raise TrackingError(f"PSL_TRACKING_TIMEOUT must be a number of seconds in (0, 3600), got {text!r}")
    return seconds


def check_tracking() -> None:
    """Fails fast, with the URI in the message, when the tracking store does not answer."""
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        timeout = health_timeout()
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
                if response.status != 200:
                    raise TrackingError(f"MLflow tracking server {uri} answered {response.status} on /health")
        except (urllib.error.URLError, OSError) as error:  # refused, unreachable, or silent past the timeout
            timed_out = isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError)
            reason = f"no answer within {timeout:g} s" if timed_out else str(error)
            raise TrackingError(
                f"MLflow tracking server {uri} does not answer ({reason}); start it or fix MLFLOW_TRACKING_URI"
            ) from None
        return
    try:
        with _first_use(uri):
            mlflow.search_experiments(max_results=1)
    except Exception as error:  # any store error means we cannot log
        raise TrackingError(f"MLflow tracking store {uri} cannot be used: {error}") from None


def _first_use(uri: str):
    """A lock beside a SQLite store, so that psl commands started together in a fresh folder
    create its tables and the experiment one after the other (MLflow's schema migration and
    experiment creation are not safe to run side by side)."""
    if not uri.startswith("sqlite:///"):
        return nullcontext()
    database = Path(uri.removeprefix("sqlite:///"))
    return taking_turns(database.with_name(f".{database.name}.lock"))


RUN_ID = re.compile(r"[0-9a-f]{32}")  # MLflow's run ids: a uuid4 in hex


def tracked_model(reference: str | Path) -> bool:
    """Whether a --model or --teacher value names something in MLflow (a run id or a models:/
    URI) rather than a checkpoint file. Anything else must be an existing file: a mistyped
    path is reported as missing, not looked up (nor a tracking store created) as a run id."""
    reference = str(reference)
    if Path(reference).is_file():
        return False
    if reference.startswith("models:/") or RUN_ID.fullmatch(reference):
        return True
    what = "a folder, not a checkpoint file" if Path(reference).is_dir() else "no such checkpoint file"
    raise MissingInput(f"{reference}: {what} (nor an MLflow run id or models:/ URI)")


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config to dotted params (MLflow params are flat strings)."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return flat


def experiment_id() -> str:
    """The experiment runs go to: the one `mlflow run` chose for this process
    (MLFLOW_EXPERIMENT_ID), else MLFLOW_EXPERIMENT_NAME, else `psl`."""
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    with _first_use(tracking_uri()):  # two processes creating it at once: one would fail
        return mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)).experiment_id


def tracked_labels(reference: str | Path) -> bool:
    """Whether a --labels value names a `label` run in MLflow rather than a folder `psl label`
    wrote. Anything else must be an existing folder: a mistyped path is reported as missing,
    not looked up (nor a tracking store created) as a run id."""
    reference = str(reference)
    if Path(reference).is_dir():
        return False
    if RUN_ID.fullmatch(reference):
        return True
    what = "a file, not a label folder" if Path(reference).exists() else "no such label folder"
    raise MissingInput(f"{reference}: {what} (of `psl label`; nor an MLflow run id)")


@contextmanager
def stage_run(
    stage: str,
    *,
    run_name: str,
    variant: str,
    dataset: str,
    config: dict,
    out: Path | None = None,
    resumed_at_step: int | None = None,
    extra_tags: dict[str, str] | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Starts the run of one stage, nested under the active run if there is one. Under
    `mlflow run` the first run started is the entry point's own (MLFLOW_RUN_ID). A run that
    raises is marked FAILED; one stopped from outside (Ctrl-C, or SIGTERM as `psl` turns it
    into an exception) is marked KILLED at once, and so is every stage run it is nested in.

    `out` is the stage's output folder: its run id is recorded there, and when an earlier
    attempt recorded there did not finish (killed: still RUNNING, or FAILED) the new run is
    linked to it (tags `psl.resumed_from` / `psl.resumed_by`) and a RUNNING one is marked
    KILLED. A training stage that resumes from a checkpoint passes `resumed_at_step`: the
    earlier attempt's metrics up to that step are copied, so the new run's curves are whole."""
    tags = {
        "psl.stage": stage,
        "psl.variant": variant,
        "psl.dataset": dataset,
        "psl.code": code_identity(),  # which code made this run: psl.provenance
        **(extra_tags or {}),
    }
    nested = mlflow.active_run() is not None
    earlier = run_id_of(out) if out is not None else None
    with mlflow.start_run(
        experiment_id=experiment_id(), run_name=run_name, nested=nested, tags=tags, log_system_metrics=True
    ) as run:
        try:
            mlflow.log_params(flatten(config))
            if earlier and earlier != run.info.run_id:
                _link_to_unfinished(earlier, run.info.run_id, resumed_at_step)
            if out is not None:
                record_run_id(out, run.info.run_id)
            yield run
        except BaseException as error:
            if stopped_from_outside(error):
                _end_as_killed(run.info.run_id)
            raise


def stopped_from_outside(error: BaseException) -> bool:
    """Whether `error` ends the process on a signal rather than on a fault of the work:
    Ctrl-C, or a SystemExit with a signal's exit status (128 + N: psl.cli's Terminated)."""
    if isinstance(error, KeyboardInterrupt):
        return True
    return isinstance(error, SystemExit) and isinstance(error.code, int) and error.code > 128


def _end_as_killed(run_id: str) -> None:
    """Ends the active run as KILLED, if it is `run_id`; start_run's exit then leaves it as it
    is instead of marking it FAILED."""
    active = mlflow.active_run()
    if active is None or active.info.run_id != run_id:
        return
    try:
        mlflow.end_run("KILLED")
    except Exception:  # the store may be what the signal interrupted: the run then stays
        pass  # RUNNING, and the next attempt in the same folder marks it KILLED


def _link_to_unfinished(earlier: str, run_id: str, resumed_at_step: int | None) -> None:
    client = mlflow.MlflowClient()
    try:
        previous = client.get_run(earlier)
    except mlflow.exceptions.MlflowException:
        return  # recorded in another tracking store
    if previous.info.status == "FINISHED":
        return
    if previous.info.status == "RUNNING":  # its process died without telling MLflow
        client.set_terminated(earlier, "KILLED")
    client.set_tag(earlier, "psl.resumed_by", run_id)
    mlflow.set_tags({"psl.resumed_from": earlier})
    if resumed_at_step is None:
        return
    mlflow.set_tags({"psl.resumed_at_step": str(resumed_at_step)})
    for key in previous.data.metrics:
        if key.startswith("system/") and key != "system/clips_per_s":
            continue  # MLflow's own host metrics of the earlier process
        history = [m for m in client.get_metric_history(earlier, key) if m.step <= resumed_at_step]
        for first in range(0, len(history), 1000):  # MLflow's batch limit
            client.log_batch(run_id, metrics=history[first : first + 1000], synchronous=True)


@contextmanager
def outside_entry_run() -> Iterator[None]:
    """Runs started inside get runs of their own instead of taking over the run that
    `mlflow run` made for this process: for upstream stages an entry point prepares."""
    entry = os.environ.pop("MLFLOW_RUN_ID", None)
    try:
        yield
    finally:
        if entry is not None:
            os.environ["MLFLOW_RUN_ID"] = entry


def finished_run(stage_key: str) -> str | None:
    """The newest FINISHED run of the experiment tagged with this `psl.stage_key`, if any."""
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id()],
        filter_string=f"tags.`psl.stage_key` = '{stage_key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0].info.run_id if runs else None


@dataclass
class RunSummary:
    run_id: str
    name: str
    status: str
    tags: dict[str, str]
    metrics: dict[str, float]
    seconds: float | None  # wall time, once the run ended


def summary(run_id: str) -> RunSummary:
    run = mlflow.get_run(run_id)
    end, start = run.info.end_time, run.info.start_time
    seconds = (end - start) / 1000 if end and start else None
    return RunSummary(run_id, run.info.run_name, run.info.status, run.data.tags, run.data.metrics, seconds)


def tag_active_run(tags: dict[str, str]) -> None:
    """Tags the active run; nothing happens when there is none."""
    if mlflow.active_run() is not None:
        mlflow.set_tags(tags)


def metric_sink(metrics: dict[str, float], step: int) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step, synchronous=False)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def _artifact_space(name: str):
    """MLflow's copy into the artifact store reports a full disk without a file: name the
    artifact's destination, for the one-line message. The destination is looked up only on
    failure: `get_artifact_uri` reads the whole run from the tracking store."""
    return naming(
        lambda: f"{mlflow.get_artifact_uri().removeprefix('file://')}/{name}", "while logging the MLflow artifact"
    )


def log_text(text: str, name: str) -> None:
    with _artifact_space(name):
        mlflow.log_text(text, name)


def log_file(path: Path, folder: str | None = None) -> None:
    with _artifact_space(f"{folder}/{path.name}" if folder else path.name):
        mlflow.log_artifact(str(path), folder)


def log_figure(figure, name: str) -> None:
    """Logs a matplotlib figure as an image artifact, then frees it."""
    import matplotlib.pyplot as plt

    try:
        with _artifact_space(name):
            mlflow.log_figure(figure, name)
    finally:
        plt.close(figure)


def log_model(model, registered_name: str | None = None) -> None:
    """The model as an MLflow PyTorch model (and a registry version when a name is given)."""
    import mlflow.pytorch
    import torch

    import psl

    # "pickle" (the whole module, loadable where psl is installed): the traced "pt2" format
    # cannot express clips of any length. Requirements are given, not inferred: inference
    # imports and times the model, which takes longer than the rest of the logging.
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"psl=={psl.__version__}"]
    with _artifact_space("model"):
        mlflow.pytorch.log_model(
            model,
            name="model",
            registered_model_name=registered_name,
            serialization_format="pickle",
            pip_requirements=requirements,
        )


def register(run_id: str, name: str, tags: dict[str, str]) -> str:
    """The registry version of the model that run `run_id` logged, created once per run."""
    client = mlflow.MlflowClient()
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        version = existing[0].version
    else:
        outputs = mlflow.get_run(run_id).outputs
        if outputs is None or not outputs.model_outputs:
            raise TrackingError(f"run {run_id} logged no model to register (tracking.log_model was false)")
        model_uri = f"models:/{outputs.model_outputs[-1].model_id}"
        version = mlflow.register_model(model_uri, name, tags=tags).version
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return str(version)


@dataclass
class ModelVersion:
    name: str
    version: str
    run_id: str
    tags: dict[str, str]


def alias_holder(name: str, alias: str) -> ModelVersion | None:
    """The version `name@alias` points to, or None if the model or alias does not exist."""
    client = mlflow.MlflowClient()
    try:
        v = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None
    return ModelVersion(v.name, str(v.version), v.run_id, dict(v.tags))


def set_alias(name: str, alias: str, version: str) -> None:
    mlflow.MlflowClient().set_registered_model_alias(name, alias, version)


def run_of_model(uri: str) -> str:
    """The run that logged the model of a registry URI: models:/NAME@ALIAS or models:/NAME/VERSION."""
    ref = uri.removeprefix("models:/")
    client = mlflow.MlflowClient()
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            version = client.get_model_version_by_alias(name, alias)
        else:
            name, number = ref.rsplit("/", 1)
            version = client.get_model_version(name, number)
    except (ValueError, mlflow.exceptions.MlflowException) as error:
        raise TrackingError(f"cannot resolve {uri!r} in the model registry of {tracking_uri()}: {error}") from None
    if not version.run_id:
        raise TrackingError(f"{uri!r} was not logged by a run, so it has no psl checkpoint")
    return version.run_id


def run_id_of(path: Path) -> str | None:
    """The MLflow run id recorded next to a stage's checkpoints, for --resume."""
    marker = Path(path) / "mlflow_run_id"
    return marker.read_text().strip() if marker.exists() else None


def record_run_id(path: Path, run_id: str) -> None:
    Path(path).mkdir(parents=True, exist_ok=True)
    write_atomic(Path(path) / "mlflow_run_id", run_id + "\n")  # never an empty id after a kill


def download_checkpoint(run_id: str, dest: Path) -> Path:
    """The best checkpoint a stage run logged (artifact checkpoints/best.pt)."""
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="checkpoints/best.pt", dst_path=str(dest)
        )
    except Exception as error:
        raise TrackingError(f"cannot fetch checkpoints/best.pt of MLflow run {run_id!r}: {error}") from None
    return Path(path)


def per_class_ap(run_id: str) -> tuple[list[str], np.ndarray]:
    """Class names and AP (in class index order) from a stage run's per_class_ap.csv."""
    rows = list(csv.DictReader(io.StringIO(mlflow.artifacts.load_text(f"runs:/{run_id}/per_class_ap.csv"))))
    rows.sort(key=lambda r: int(r["index"]))
    return [r["name"] for r in rows], np.array([float(r["ap"]) for r in rows])


def log_dir(path: Path, folder: str) -> None:
    with _artifact_space(folder):
        mlflow.log_artifacts(str(path), folder)


def download_dir(run_id: str, folder: str, dest: Path) -> Path:
    """An artifact folder of a run (e.g. the label store a `label` run logged). Label stores
    in it are verified against their checksums before anything reads them: a download is
    where a store that was fine when logged can arrive cut short or altered."""
    try:
        path = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=folder, dst_path=str(dest)))
    except Exception as error:
        raise TrackingError(f"cannot fetch {folder}/ of MLflow run {run_id!r}: {error}") from None
    from psl.labels import META_FILE, verify_stores

    if any(path.glob(f"**/{META_FILE}")):
        verify_stores(path)
    return path
