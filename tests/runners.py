"""Running psl stages from tests: in-process on the tiny profile, or under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from psl.stages.common import resolve_config
from psl.stages.student import run_student

TORCHRUN = Path(sys.executable).with_name("torchrun")


def tiny_student(data: Path, out: Path, *overrides: str, labels: str | None = None, teacher: str | None = None):
    """`psl student --profile tiny` with `--set` overrides, stored labels or an online teacher."""
    resolved = resolve_config("tiny", None, list(overrides), "student")
    return run_student(resolved, labels, teacher=teacher, out=out, data=data, progress=False)


def torchrun_psl(*args: str, tracking_uri: str, processes: int = 2) -> None:
    """`torchrun -m psl ARGS` on CPU processes (gloo), logging to `tracking_uri`."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "OMP_NUM_THREADS": "1"}
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node", str(processes), "-m", "psl", *args]
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)
