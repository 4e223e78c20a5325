"""The MLproject entry points' commands as MLflow builds them, run through mlproject/run.sh
with a stand-in `python` that prints the arguments it gets: what `python -m psl` would
receive, and what psl makes of the `--set` overrides. (A real `mlflow run` of entry points:
tests/test_pipeline.py.)"""

import os
import subprocess
from pathlib import Path

import pytest
from mlflow.projects._project_spec import load_project

from psl.stages.common import resolve_config

REPO = Path(__file__).resolve().parent.parent

# Says "the native extension loads" to run.sh's check, and prints any other call's arguments.
FAKE_PYTHON = """#!/bin/sh
if [ "$1" = -c ]; then exit 0; fi
printf '%s\\0' "$@"
"""


@pytest.fixture(scope="module")
def fake_path(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("fake-python")
    python = folder / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def psl_argv(fake_path: str, entry_point: str, **parameters: str) -> list[str]:
    """The arguments `python -m psl` gets when MLflow runs `entry_point` with `parameters`
    (MLflow fills in the MLproject's command with shell-quoted values and runs it with bash)."""
    command = load_project(str(REPO)).get_entry_point(entry_point).compute_command(parameters, None)
    env = {**os.environ, "PATH": fake_path, "MLFLOW_RUN_ID": "run1"}
    done = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    argv = done.stdout.decode().split("\0")
    assert argv[-1] == "" and argv[:2] == ["-m", "psl"], argv
    return argv[2:-1]


def overrides(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]


def test_a_list_with_spaces_and_a_value_with_equals_signs(fake_path):
    argv = psl_argv(
        fake_path,
        "pipeline",
        profile="tiny",
        set="pipeline.students=[psl-2s, psl-5s]  student.data.root=/a=b",
        force="true",
    )
    assert argv == [
        "pipeline",
        "--profile",
        "tiny",
        "--set",
        "pipeline.students=[psl-2s, psl-5s]",
        "--set",
        "student.data.root=/a=b",
        "--force",
    ]  # the empty `data` and `seed` are dropped
    resolved = resolve_config("tiny", None, overrides(argv), None)
    assert resolved.data["pipeline"]["students"] == ["psl-2s", "psl-5s"]
    assert resolved.data["student"]["data"]["root"] == "/a=b"


def test_a_value_with_an_equals_sign_alone(fake_path):
    argv = psl_argv(fake_path, "student", profile="tiny", set="student.data.root=/a=b")
    assert argv == ["student", "--out", "runs/run1", "--profile", "tiny", "--set", "student.data.root=/a=b"]


def test_quotes_braces_and_any_whitespace(fake_path):
    text = '\ttrain.lr=0.001\n name=\'a b\' model={width: 0.5, n_mels: [32, 64]} note="say \\"hi there\\"" x=[] '
    argv = psl_argv(fake_path, "teacher", set=text)
    assert overrides(argv) == [
        "train.lr=0.001",
        "name='a b'",
        "model={width: 0.5, n_mels: [32, 64]}",
        'note="say \\"hi there\\""',
        "x=[]",
    ]
    assert argv[:3] == ["teacher", "--out", "runs/run1"]
    resolved = resolve_config("tiny", None, overrides(argv), "teacher")
    assert resolved.data["teacher"]["name"] == "a b"
    assert resolved.data["teacher"]["model"] == {"width": 0.5, "n_mels": [32, 64]}
    assert resolved.data["teacher"]["note"] == 'say "hi there"'


def test_no_overrides_and_no_force(fake_path):
    argv = psl_argv(fake_path, "pipeline", set="", force="false", seed="3")
    assert argv == ["pipeline", "--profile", "demo", "--seed", "3"]
