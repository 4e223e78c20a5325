"""MLflow, in one place: the only module of psl that imports mlflow.

Conventions (DESIGN.md section 7): one run per stage, tagged `psl.stage`, `psl.variant`
and `psl.dataset`; the resolved config as params; metrics named alike across stages
(`train/loss`, `val/mAP`, `test/mAP`, ...); artifacts for configs, tables, plots and the
best checkpoint. Tracking goes where MLflow's default points (`sqlite:///mlflow.db` in
the working directory) unless MLFLOW_TRACKING_URI says otherwise.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import mlflow

EXPERIMENT = "psl"


class TrackingError(RuntimeError):
    """The tracking server cannot be used; raised before any work starts."""


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def check_tracking() -> None:
    """Fails fast, with the URI in the message, when the tracking store does not answer."""
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as response:
                if response.status != 200:
                    raise TrackingError(f"MLflow tracking server {uri} answered {response.status} on /health")
        except (urllib.error.URLError, OSError) as error:
            raise TrackingError(
                f"MLflow tracking server {uri} does not answer ({error}); start it or fix MLFLOW_TRACKING_URI"
            ) from None
        return
    try:
        mlflow.search_experiments(max_results=1)
    except Exception as error:  # any store error means we cannot log
        raise TrackingError(f"MLflow tracking store {uri} cannot be used: {error}") from None


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


@contextmanager
def stage_run(
    stage: str,
    *,
    run_name: str,
    variant: str,
    dataset: str,
    config: dict,
    run_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Starts (or, with `run_id`, continues) the run of one stage. A run that raises is marked FAILED."""
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT))
    tags = {"psl.stage": stage, "psl.variant": variant, "psl.dataset": dataset, **(extra_tags or {})}
    nested = mlflow.active_run() is not None
    with mlflow.start_run(
        run_id=run_id, run_name=None if run_id else run_name, nested=nested, tags=tags, log_system_metrics=True
    ) as run:
        if run_id is None:
            mlflow.log_params(flatten(config))
        yield run


def metric_sink(metrics: dict[str, float], step: int) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step, synchronous=False)


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_text(text: str, name: str) -> None:
    mlflow.log_text(text, name)


def log_file(path: Path, folder: str | None = None) -> None:
    mlflow.log_artifact(str(path), folder)


def log_figure(figure, name: str) -> None:
    mlflow.log_figure(figure, name)


def log_model(model, registered_name: str | None = None) -> None:
    """The model as an MLflow PyTorch model (and a registry version when a name is given)."""
    import mlflow.pytorch

    # "pickle" (the whole module, loadable where psl is installed): the traced "pt2" format
    # cannot express clips of any length.
    mlflow.pytorch.log_model(model, name="model", registered_model_name=registered_name, serialization_format="pickle")


def run_id_of(path: Path) -> str | None:
    """The MLflow run id recorded next to a stage's checkpoints, for --resume."""
    marker = Path(path) / "mlflow_run_id"
    return marker.read_text().strip() if marker.exists() else None


def record_run_id(path: Path, run_id: str) -> None:
    Path(path).mkdir(parents=True, exist_ok=True)
    (Path(path) / "mlflow_run_id").write_text(run_id + "\n")


def download_checkpoint(run_id: str, dest: Path) -> Path:
    """The best checkpoint a stage run logged (artifact checkpoints/best.pt)."""
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="checkpoints/best.pt", dst_path=str(dest)
        )
    except Exception as error:
        raise TrackingError(f"cannot fetch checkpoints/best.pt of MLflow run {run_id!r}: {error}") from None
    return Path(path)


def log_dir(path: Path, folder: str) -> None:
    mlflow.log_artifacts(str(path), folder)


def download_dir(run_id: str, folder: str, dest: Path) -> Path:
    """An artifact folder of a run (e.g. the label store a `label` run logged)."""
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=folder, dst_path=str(dest)))
    except Exception as error:
        raise TrackingError(f"cannot fetch {folder}/ of MLflow run {run_id!r}: {error}") from None
