"""A fresh SQLite tracking store is created once, even when several psl commands start at once
in a new folder (each would otherwise run MLflow's schema migration on the same file)."""

import os
import subprocess
import sys

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
