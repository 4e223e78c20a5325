"""The tracking store under faults: a fresh SQLite store is created once, even when several psl
commands start at once in a new folder (each would otherwise run MLflow's schema migration on
the same file); a full disk while MLflow writes an artifact names the artifact."""

import errno
import os
import subprocess
import sys

import mlflow
import pytest

from psl import tracking as psl_tracking

FIRST_USE = "from psl import tracking; tracking.check_tracking(); print(tracking.experiment_id())"


def test_commands_started_together_in_a_fresh_folder_share_one_new_store(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    env.pop("MLFLOW_EXPERIMENT_NAME", None)
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_USE],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in starts]
    assert all(code == 0 for code, _, _ in results), [err[-600:] for code, _, err in results if code]
    assert len({out.strip() for _, out, _ in results}) == 1  # one experiment, the same for all


def test_a_full_disk_while_mlflow_writes_an_artifact_names_the_artifact(tracking, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")  # as MLflow's copy reports it: no file

    monkeypatch.setattr(mlflow, "log_text", full_disk)
    with mlflow.start_run(experiment_id=psl_tracking.experiment_id()):  # of this test's store
        with pytest.raises(OSError, match="No space left on device while logging the MLflow artifact") as caught:
            psl_tracking.log_text("a,b\n", "per_class_ap.csv")
        assert caught.value.filename.endswith("/artifacts/per_class_ap.csv")
