"""Kill at any point, resume, same result: every long stage is killed with SIGKILL at a
random point (a step, a clip, a stage), the same command is run again (with --resume where that is the interface),
and the outcome is compared with an uninterrupted run of the same seed on the CPU:

- the command completes, and no finished unit of work (a file ingested, a clip labelled, a
  training step before the last checkpoint) is done again;
- stores and labels are bitwise identical, training ends in the same weights and metrics;
- a half-written output is never taken as complete;
- the killed attempt's MLflow run is marked KILLED and linked to the run that resumed it.

PSL_KILLS (default 1) sets how many kill points each stage gets; the soak runs more:
    PSL_KILLS=5 pytest tests/test_kill_resume.py
"""

from __future__ import annotations

import os
import random
import signal
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest
import torch

from conftest import SEED
from psl.checkpoints import load_checkpoint
from psl.data.ragged import partial_dir
from psl.labels import LabelStore
from runners import SHORT_TRAINING as TRAIN  # 16 steps, checkpoint every 4
from runners import psl_command as psl
from runners import sets, short_teacher_command, stage_env
from test_ingest import write_many

KILLS = int(os.environ.get("PSL_KILLS", "1"))


def run(command: list[str], env: dict, cwd: Path | None = None) -> str:
    """Runs `command` to the end; returns what it printed."""
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def kill_at(command: list[str], env: dict, reached: Callable[[str], bool], cwd: Path | None = None) -> None:
    """Runs `command` and kills it with SIGKILL as soon as `reached(stderr so far)` is true: the
    kill point is a unit of progress (a step, a clip, a stage), not a time, so that a busy
    machine does not move it past the end."""
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(iter(lambda: proc.stderr.read1(4096).decode(), "")))
    reader.start()
    deadline = time.time() + 600
    while not reached("".join(printed)):
        assert proc.poll() is None, f"ended before the kill point: {''.join(printed)[-2000:]}"
        assert time.time() < deadline, "the kill point was never reached"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join()


def steps_done(printed: str, bar: str = "train") -> int:
    """Steps the last update of a tqdm bar named `bar` shows."""
    counts = re.findall(rf"{bar}:\s+\d+%\|[^|]*\|\s*(\d+)/\d+", printed)
    return int(counts[-1]) if counts else 0


@pytest.fixture
def env(tracking) -> dict:
    return stage_env(tracking)


def kill_rngs(name: str) -> list[random.Random]:
    return [random.Random(f"{SEED}-{name}-{k}") for k in range(KILLS)]


def journal_lines(partial: Path) -> int:
    journal = partial / "journal.jsonl"
    return journal.read_text().count("\n") if journal.exists() else 0


def checkpoint_step(out: Path) -> int:
    return load_checkpoint(out / "last.pt")["state"]["step"] if (out / "last.pt").exists() else 0


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_checkpoint(a), load_checkpoint(b)
    assert first["state"]["step"] == second["state"]["step"]
    for name, tensor in first["model"].items():
        assert torch.equal(tensor, second["model"][name]), name


def assert_linked(killed_run: str, resumed_run: str, step: int = 0, steps: int = 0) -> None:
    """The killed attempt is KILLED and linked both ways; a trainer that resumed from the
    checkpoint at `step` says so, and its loss curve is whole (each of `steps` steps once)."""
    killed, resumed = mlflow.get_run(killed_run), mlflow.get_run(resumed_run)
    assert killed.info.status == "KILLED"
    assert killed.data.tags["psl.resumed_by"] == resumed_run
    assert resumed.data.tags["psl.resumed_from"] == killed_run
    assert resumed.info.status == "FINISHED"
    if step:
        assert resumed.data.tags["psl.resumed_at_step"] == str(step)
    if steps:
        losses = mlflow.MlflowClient().get_metric_history(resumed_run, "train/loss")
        assert sorted(m.step for m in losses) == list(range(1, steps + 1))


def run_id_in(folder: Path) -> str:
    return (folder / "mlflow_run_id").read_text().strip()


def stage_starts(pipeline: Path) -> list[float]:
    """When each stage of a pipeline folder began (its run id was recorded), in order."""
    return sorted(marker.stat().st_mtime for marker in pipeline.glob("*/mlflow_run_id"))


@contextmanager
def reading_store(env: dict) -> Iterator[None]:
    """MLflow calls in this process read the tracking store that `env` names, until the block ends."""
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)


def finished_at(env: dict, cwd: Path) -> float:
    """When the pipeline run of the store in `env`, started in `cwd`, ended (seconds since the epoch)."""
    with reading_store(env):
        return mlflow.get_run(run_id_in(cwd / "runs" / "pipeline")).info.end_time / 1000


@pytest.mark.parametrize("rng", kill_rngs("ingest"))
def test_ingest(tmp_path, rng):
    write_many(tmp_path / "fsd", 40)
    command = psl("data", "fsd50k", "--root", str(tmp_path / "fsd"), "--workers", "1", "--out")
    straight, out = tmp_path / "straight", tmp_path / "out"
    run([*command, str(straight)], os.environ)
    partial, clip = partial_dir(out / "train"), rng.randint(1, 39)
    kill_at([*command, str(out)], os.environ, lambda _: journal_lines(partial) >= clip)
    done = journal_lines(partial)
    printed = run([*command, str(out)], os.environ)
    assert f"{done} resumed from an earlier run" in printed
    for name in ("audio.i16", "manifest.csv"):
        assert (out / "train" / name).read_bytes() == (straight / "train" / name).read_bytes()


def trained_and_killed(
    command: list[str], env: dict, tmp_path: Path, steps: int, rng, straight: Path | None = None
) -> tuple[Path, Path, int, str]:
    """An uninterrupted training run (unless `straight` is the folder of one already made by
    `command`) and one killed at a random step, then run again (with --resume once there is a
    checkpoint); returns both folders, the checkpoint step the second attempt started from and
    the killed attempt's MLflow run id."""
    out = tmp_path / "killed"
    if straight is None:
        straight = tmp_path / "straight"
        run([*command, str(straight)], env)
    kill_step = rng.randint(1, steps - 1)
    kill_at([*command, str(out)], env, lambda printed: steps_done(printed) >= kill_step)
    step, killed_run = checkpoint_step(out), run_id_in(out)
    run([*command, str(out), *(["--resume"] if step else [])], env)
    assert_same_weights(straight / "last.pt", out / "last.pt")
    assert_linked(killed_run, run_id_in(out), step, steps)
    return straight, out, step, killed_run


@pytest.mark.parametrize("rng", kill_rngs("teacher"))
def test_teacher(tiny_root, tiny_teacher, env, tmp_path, rng):
    """The uninterrupted run is the session's teacher, made by the same command (conftest.py)."""
    command = short_teacher_command(tiny_root)
    straight, out, _, _ = trained_and_killed(command, env, tmp_path, 16, rng, straight=tiny_teacher.out)
    assert_same_weights(straight / "best.pt", out / "best.pt")
    expected = mlflow.MlflowClient(tiny_teacher.tracking_uri).get_run(tiny_teacher.run_id).data.metrics["test/mAP"]
    assert mlflow.get_run(run_id_in(out)).data.metrics["test/mAP"] == expected


@pytest.fixture
def teacher_checkpoint(tiny_teacher) -> Path:
    """A briefly trained teacher for the labelling, student and transfer kills: the session's."""
    return tiny_teacher.best_checkpoint


@pytest.mark.parametrize("rng", kill_rngs("label"))
def test_label(tiny_root, teacher_checkpoint, env, tmp_path, rng):
    command = psl("label", "--teacher", str(teacher_checkpoint), "--data", str(tiny_root), "--batch-size", "1")
    straight, out = tmp_path / "straight", tmp_path / "killed"
    run([*command, "--out", str(straight)], env)
    partial, clip = partial_dir(out / "balanced"), rng.randint(1, 18)  # of 24 clips; later ones can beat the poll
    kill_at([*command, "--out", str(out)], env, lambda _: journal_lines(partial) >= clip)
    done, killed_run = journal_lines(partial), run_id_in(out)
    with pytest.raises(FileNotFoundError, match="unfinished"):  # a half-written store is refused
        LabelStore(out / "balanced")
    run([*command, "--out", str(out)], env)
    for split in ("balanced", "val"):
        for name in ("frames.f16", "index.csv"):
            assert (out / split / name).read_bytes() == (straight / split / name).read_bytes()
    resumed = mlflow.get_run(run_id_in(out))
    assert resumed.data.metrics["labels/balanced/resumed_clips"] == done, "finished clips are not labelled again"
    assert_linked(killed_run, resumed.info.run_id)


@pytest.mark.parametrize("rng", kill_rngs("student"))
def test_student(tiny_root, tiny_labels, env, tmp_path, rng):
    command = psl("student", "--profile", "tiny", "--data", str(tiny_root), "--labels", str(tiny_labels))
    trained_and_killed([*command, *sets(*TRAIN), "--out"], env, tmp_path, 16, rng)


@pytest.mark.parametrize("rng", kill_rngs("transfer"))
def test_transfer_finetune(tiny_root, teacher_checkpoint, env, tmp_path, rng):
    command = psl("transfer", "--model", str(teacher_checkpoint), "--profile", "tiny", "--mode", "finetune")
    command += ["--data", str(tiny_root / "fsd"), *sets("train.epochs=4", "train.eval_every_steps=2"), "--out"]
    straight, out, _, _ = trained_and_killed(command, env, tmp_path, 8, rng)  # 16 clips, batch 8, 4 epochs
    expected = mlflow.get_run(run_id_in(straight)).data.metrics["transfer/fsd50k/finetune/mAP"]
    assert mlflow.get_run(run_id_in(out)).data.metrics["transfer/fsd50k/finetune/mAP"] == expected


@pytest.mark.slow
@pytest.mark.parametrize("rng", kill_rngs("pipeline"))
def test_pipeline(tiny_root, tmp_path, rng):
    """`psl pipeline` killed in a random stage (teacher, label, student, baseline, the two
    transfers): the re-run reuses the finished stages, resumes the one it was in, and ends
    where an uninterrupted pipeline (in a store of its own) ends."""

    def folder(name: str) -> tuple[Path, dict]:
        (tmp_path / name).mkdir()
        return tmp_path / name, {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / name}/mlflow.db"}

    command = psl("pipeline", "--profile", "tiny", "--data", str(tiny_root))
    straight, straight_env = folder("straight")
    run(command, straight_env, straight)
    # The kill lands in the first half of a stage as long as the straight run took for it (the
    # last one ends when the pipeline's run does): a fixed delay fell past the end of the short
    # transfer stages, after the pipeline had finished, in about one run in four.
    timeline = stage_starts(straight / "runs" / "pipeline") + [finished_at(straight_env, straight)]
    assert len(timeline) == 7, "teacher, label, student, baseline and two transfers, then the end"
    stage = rng.randint(1, 6)
    delay, entered = rng.uniform(0, 0.5 * (timeline[stage] - timeline[stage - 1])), []
    killed, killed_env = folder("killed")
    pipeline = killed / "runs" / "pipeline"

    def reached(_: str) -> bool:
        if not entered and len(list(pipeline.glob("*/mlflow_run_id"))) >= stage:
            entered.append(time.time())
        return bool(entered) and time.time() > entered[0] + delay

    kill_at(command, killed_env, reached, cwd=killed)
    killed_parent = run_id_in(pipeline)
    run(command, killed_env, killed)
    for variant in ("teacher", "psl-2s", "weak"):
        (a,) = (straight / "runs" / "pipeline").glob(f"{variant}-*")
        (b,) = pipeline.glob(f"{variant}-*")
        assert_same_weights(a / "best.pt", b / "best.pt")
    (a,) = (straight / "runs" / "pipeline").glob("psl-frames-*")
    (b,) = pipeline.glob("psl-frames-*")
    assert (a / "balanced" / "frames.f16").read_bytes() == (b / "balanced" / "frames.f16").read_bytes()
    with reading_store(killed_env):
        assert_linked(killed_parent, run_id_in(pipeline))
