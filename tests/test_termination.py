"""Ends that are not faults of the work, and inputs that must fail before any work:

- SIGTERM (what a scheduler, systemd or `docker stop` sends) marks the run KILLED in MLflow
  at once, with every run it is nested in, and keeps the checkpoints written before it;
- a mistyped --model, --teacher or --labels path is a missing file, with no tracking store
  made; a tracking server that does not answer fails in seconds, naming its URI;
- a last.pt that is not a checkpoint (text, arbitrary bytes) is one line naming it.
"""

from __future__ import annotations

import io
import pickle
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch
from typer.testing import CliRunner

from conftest import SEED
from psl.checkpoints import load_checkpoint
from psl.cli import Terminated, app
from psl.tracking import stage_run
from psl.trainer import save_atomic
from runners import psl_command, sets, stage_env

RUN_ID = "0123456789abcdef0123456789abcdef"  # well formed, in no store


def psl(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, *parts: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for part in parts:
        assert part in result.stderr, result.stderr


# ---- SIGTERM ------------------------------------------------------------------------------


def run_status(run_id: str) -> str | None:
    """The run's status, or None while the store is busy with the process that writes it."""
    try:
        return mlflow.get_run(run_id).info.status
    except mlflow.exceptions.MlflowException:
        return None


def running_with_a_checkpoint(proc: subprocess.Popen, out: Path, log: Path, timeout: float = 180) -> str:
    """Waits until the training in `out` is a RUNNING MLflow run that has written last.pt;
    returns the run id."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"ended on its own: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"no running run with a checkpoint: {log.read_text()[-2000:]}"
        marker = out / "mlflow_run_id"
        if marker.exists() and (out / "last.pt").exists():
            run_id = marker.read_text().strip()
            if run_status(run_id) == "RUNNING":
                return run_id
        time.sleep(0.2)


def test_sigterm_marks_the_run_killed_at_once_and_keeps_the_checkpoints(tiny_root, tracking, tmp_path):
    out, log = tmp_path / "teacher", tmp_path / "stderr.txt"
    command = psl_command("teacher", "--profile", "tiny", "--data", str(tiny_root), "--out", str(out))
    with log.open("w") as stderr:  # a file, not a pipe: progress bars would fill a pipe nobody reads
        proc = subprocess.Popen(
            [*command, *sets("train.epochs=1000", "train.steps_per_epoch=2")],
            env=stage_env(tracking),
            cwd=tmp_path,
            stderr=stderr,
        )
        try:
            run_id = running_with_a_checkpoint(proc, out, log)
            proc.send_signal(signal.SIGTERM)
            start = time.monotonic()
            proc.wait(timeout=30)
            seconds = time.monotonic() - start
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, log.read_text()[-2000:]
    assert seconds < 15, f"took {seconds:.1f} s to stop"
    assert "stopped by SIGTERM" in log.read_text().splitlines()[-1]
    assert mlflow.get_run(run_id).info.status == "KILLED"
    assert load_checkpoint(out / "last.pt")["state"]["step"] > 0, "the checkpoint written before is kept"


@pytest.mark.parametrize("stop", [Terminated(128 + signal.SIGTERM), KeyboardInterrupt()], ids=["sigterm", "ctrl-c"])
def test_a_stopped_stage_and_the_runs_it_is_nested_in_are_killed(tracking, stop):
    started = []
    with pytest.raises(type(stop)):
        with tracking_stage("pipeline") as outer, tracking_stage("teacher") as inner:
            started += [outer.info.run_id, inner.info.run_id]
            raise stop
    assert [mlflow.get_run(r).info.status for r in started] == ["KILLED", "KILLED"]
    assert mlflow.active_run() is None


def test_a_stage_that_fails_is_still_failed(tracking):
    with pytest.raises(ValueError), tracking_stage("teacher") as run:
        raise ValueError("a fault of the work")
    assert mlflow.get_run(run.info.run_id).info.status == "FAILED"


def tracking_stage(stage: str):
    return stage_run(stage, run_name=stage, variant=stage, dataset="none", config={})


def test_processes_forked_from_psl_get_sigterm_s_default_back():
    """Data loader and decoding workers are forked from psl; their parent stops them with
    SIGTERM and joins them. With psl's handler they could miss it (a handler runs between
    bytecodes, and a worker about to block on the pool's queue lock never gets to one), and
    the parent's join would hang, as a data ingest under `mlflow run` did."""
    script = (
        "import multiprocessing, signal, sys\n"
        "from psl.cli import _stop_on_sigterm\n"
        "def default(_):\n"
        "    return signal.getsignal(signal.SIGTERM) == signal.SIG_DFL\n"
        "_stop_on_sigterm()\n"
        "assert not default(None), 'psl handles SIGTERM in its own process'\n"
        "with multiprocessing.get_context('fork').Pool(2) as pool:\n"
        "    sys.exit(0 if all(pool.map(default, range(4))) else 1)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# ---- mistyped paths and silent tracking servers, before any work --------------------------


@pytest.mark.parametrize(
    "command, missing",
    [
        (["student", "--profile", "tiny", "--teacher", "runs/teacher/best.pt"], "no such checkpoint file"),
        (["student", "--profile", "tiny", "--labels", "runs/labels"], "no such label folder"),
        (["analyse", "--profile", "tiny", "--labels", "runs/labels"], "no such label folder"),
        (["transfer", "--profile", "tiny", "--model", "runs/teacher/best.pt"], "no such checkpoint file"),
    ],
    ids=["student-teacher", "student-labels", "analyse", "transfer"],
)
def test_a_mistyped_path_is_a_missing_file_and_creates_no_tracking_store(tmp_path, monkeypatch, command, missing):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # MLflow's default: ./mlflow.db
    one_line_error(psl(*command), f"{command[-1]}: {missing}")
    assert not list(tmp_path.iterdir()), "no mlflow.db, no data generated"


def test_student_refuses_labels_and_a_teacher_together_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    done = psl("student", "--profile", "tiny", "--labels", "runs/labels", "--teacher", "runs/teacher/best.pt")
    one_line_error(done, "give --labels (stored pseudo labels) or --teacher (online labelling), not both")
    assert not list(tmp_path.iterdir()), "no mlflow.db, no data generated"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "command",
    [
        ["student", "--profile", "tiny"],  # no --labels: the teacher and label runs are looked up
        ["analyse", "--profile", "tiny", "--labels", RUN_ID],
        ["transfer", "--profile", "tiny", "--model", RUN_ID],
    ],
    ids=["student", "analyse", "transfer"],
)
def test_a_dead_tracking_server_fails_in_seconds_with_its_uri(tmp_path, command):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {**stage_env(uri), "PSL_TRACKING_TIMEOUT": "1", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    start = time.monotonic()
    done = subprocess.run(
        psl_command(*command),  # no --data: the profile's benchmark would be generated in tmp_path
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith(f"error: MLflow tracking server {uri} does not answer"), done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and time.monotonic() - start < 60
    assert not list(tmp_path.iterdir()), "failed before any work: no data generated"


# ---- a last.pt that is not a checkpoint ----------------------------------------------------


def garbage(rng: random.Random) -> dict[str, bytes]:
    """Files that torch.load fails on in different ways (a KeyError, an UnicodeDecodeError, an
    unpickling error with a warning first, a zip archive cut short, nothing at all)."""
    buffer = io.BytesIO()
    torch.save({"model": {"w": torch.zeros(64)}, "state": {"step": 1}}, buffer)
    saved = buffer.getvalue()
    return {
        "text": b"hello, not a checkpoint\n",
        "random": bytes(rng.randrange(256) for _ in range(512)),
        "pickle-protocol": b"\x80" + bytes(rng.randrange(256) for _ in range(256)),
        "cut-short": saved[: len(saved) // 2],
        "empty": b"",
        "plain-pickle": pickle.dumps([1, 2, 3], protocol=4),
    }


def test_load_checkpoint_refuses_arbitrary_bytes_in_one_line_naming_the_file(tmp_path):
    rng = random.Random(f"{SEED}-garbage")
    for name, data in garbage(rng).items():
        path = tmp_path / f"{name}.pt"
        path.write_bytes(data)
        with pytest.raises(ValueError) as caught:
            load_checkpoint(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: not a") and "\n" not in message, (name, message)


def test_resume_from_a_last_pt_that_is_text_is_one_line(tiny_root, tracking, tmp_path):
    out = tmp_path / "teacher"
    out.mkdir()
    (out / "last.pt").write_text("hello, not a checkpoint\n")
    done = psl("teacher", "--profile", "tiny", "--data", tiny_root, "--out", out, "--resume")
    one_line_error(done, f"{out / 'last.pt'}: not a readable psl checkpoint")


def test_a_real_checkpoint_still_loads(tmp_path):
    save_atomic({"model": {"w": torch.ones(2)}}, tmp_path / "last.pt")
    assert torch.equal(load_checkpoint(tmp_path / "last.pt")["model"]["w"], torch.ones(2))
