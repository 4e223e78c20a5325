"""Running psl stages from tests: in-process on the tiny profile, or under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from psl.stages.common import resolve_config
from psl.stages.student import run_student

TORCHRUN = Path(sys.executable).with_name("torchrun")
# A short training (16 steps, a checkpoint every 4): the session's tiny teacher (conftest.py)
# and the runs tests/test_kill_resume.py kills.
SHORT_TRAINING = ("train.epochs=2", "train.steps_per_epoch=8", "train.eval_every_steps=4")


def psl_command(*args: str) -> list[str]:
    """`python -m psl ARGS` with this interpreter."""
    return [sys.executable, "-m", "psl", *args]


def sets(*overrides: str) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def short_teacher_command(data: Path) -> list[str]:
    """`psl teacher` on the tiny profile with SHORT_TRAINING, the output folder to follow: the
    session's teacher is trained with this command, and test_kill_resume.py compares the
    teachers it kills and resumes with that one."""
    return psl_command("teacher", "--profile", "tiny", "--data", str(data), *sets(*SHORT_TRAINING), "--out")


def stage_env(tracking_uri: str) -> dict:
    """The environment of a stage run in a process of its own, logging to `tracking_uri`,
    on two threads (the thread count decides the exact weights)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    return {**env, "MLFLOW_TRACKING_URI": tracking_uri, "OMP_NUM_THREADS": "2"}


def tiny_student(data: Path, out: Path, *overrides: str, labels: str | None = None, teacher: str | None = None):
    """`psl student --profile tiny` with `--set` overrides, stored labels or an online teacher."""
    resolved = resolve_config("tiny", None, list(overrides), "student")
    return run_student(resolved, labels, teacher=teacher, out=out, data=data, progress=False)


def torchrun_psl(*args: str, tracking_uri: str, processes: int = 2) -> None:
    """`torchrun -m psl ARGS` on CPU processes (gloo), logging to `tracking_uri`."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "OMP_NUM_THREADS": "1"}
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node", str(processes), "-m", "psl", *args]
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)
