"""Faults from outside the input data (issue #8): unsafe files, a full or read-only disk,
two processes on one output, a tracking server that does not answer, models that do not
fit. (Killed processes: test_kill_resume.py; bad data files: test_bad_input.py, test_fuzz.py.)"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from psl.checkpoints import load_checkpoint, load_tagger, model_snapshot
from psl.cli import app
from psl.config import ConfigError, read_yaml
from psl.data.ragged import RaggedWriter, partial_dir
from psl.locks import Busy, exclusive
from psl.models.tagger import AudioTagger, ModelConfig
from psl.stages.common import resolve_config
from psl.stages.weak import run_teacher
from psl.trainer import save_atomic
from test_ingest import write_many


def psl(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "psl", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


class Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_unrun(tiny_root, tracking, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "best.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "config": Payload(marker)}, evil)
    with pytest.raises(ValueError, match=r"best\.pt: refused: .*GLOBAL posix\.system"):
        load_checkpoint(evil)
    # The command, in this process; --data: the benchmark the profile would otherwise generate
    # first has no part in this.
    result = CliRunner().invoke(app, ["evaluate", "--model", str(evil), "--profile", "tiny", "--data", str(tiny_root)])
    assert result.exit_code == 2 and "refused" in result.stderr, (result.stderr, result.exception)
    assert not marker.exists()


def test_truncated_and_foreign_checkpoints_are_named(tmp_path):
    good = tmp_path / "good.pt"
    save_atomic({"model": {"w": torch.zeros(3)}}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.pt: not a readable psl checkpoint"):
        load_checkpoint(truncated)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(2), tensor)
    with pytest.raises(ValueError, match="tensor.pt: not a psl checkpoint"):
        load_checkpoint(tensor)


def test_checkpoints_of_another_architecture_or_class_count_are_refused(tmp_path):
    small, wide = ModelConfig(width=0.25, n_mels=32), ModelConfig(width=0.5, n_mels=32)
    mismatched = tmp_path / "mismatched.pt"
    # Weights of a wider network under a config that describes the narrow one.
    save_atomic(
        {"model": AudioTagger(6, wide).state_dict(), "config": model_snapshot(small, "abcdef", "ABCDEF")}, mismatched
    )
    with pytest.raises(ValueError, match="mismatched.pt: weights do not fit the model it describes"):
        load_tagger(mismatched)
    classes = tmp_path / "classes.pt"
    save_atomic(
        {"model": AudioTagger(5, small).state_dict(), "config": model_snapshot(small, "abcdef", "ABCDEF")}, classes
    )
    with pytest.raises(ValueError, match="classes.pt: weights do not fit"):
        load_tagger(classes)
    plain = tmp_path / "plain.pt"
    save_atomic({"model": AudioTagger(6, small).state_dict()}, plain)
    with pytest.raises(ValueError, match="plain.pt is not a psl tagger checkpoint"):
        load_tagger(plain)


def test_a_model_for_other_classes_is_refused_by_label_and_evaluate(tiny_root, tracking, tmp_path):
    other = tmp_path / "other.pt"
    cfg = ModelConfig(width=0.25, n_mels=32)
    save_atomic({"model": AudioTagger(3, cfg).state_dict(), "config": model_snapshot(cfg, "xyz", "XYZ")}, other)
    for command in (["label", "--teacher"], ["evaluate", "--model"]):  # the commands, in this process
        result = CliRunner().invoke(app, [*command, str(other), "--data", str(tiny_root)])
        assert result.exit_code == 2 and "3 classes are not the classes of" in result.stderr, (
            result.stderr,
            result.exception,
        )


def test_configs_cannot_construct_objects(tmp_path):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f'teacher: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match="evil.yaml: not valid YAML"):
        read_yaml(config)
    assert not marker.exists()


def test_a_second_writer_of_the_same_store_is_refused(tmp_path):
    first = RaggedWriter(tmp_path / "store", "data.bin", np.dtype("<f2"), (3,))
    first.append("a", np.ones((2, 3)))
    with pytest.raises(Busy, match=rf"{tmp_path / 'store'} is being written by pid {os.getpid()}"):
        RaggedWriter(tmp_path / "store", "data.bin", np.dtype("<f2"), (3,))
    first.close()  # the lock goes with the writer
    second = RaggedWriter(tmp_path / "store", "data.bin", np.dtype("<f2"), (3,))
    assert second.done("a")
    second.publish({})
    assert not (tmp_path / "store" / "writer.lock").exists()


@pytest.mark.parametrize(
    "command, folder",
    [
        (["pipeline", "--profile", "tiny"], "runs/pipeline"),
        (["teacher", "--profile", "tiny", "--out", "runs/t"], "runs/t"),
        (["label", "--teacher", "unused.pt", "--profile", "tiny", "--out", "runs/l"], "runs/l"),
    ],
)
def test_a_second_process_on_the_same_output_is_refused(tiny_root, tmp_path, command, folder):
    """What two `psl pipeline`s (or stages) in one folder meet: the second stops at once,
    naming the folder and the process that holds it."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    checkpoint = tmp_path / "unused.pt"
    cfg = ModelConfig(width=0.25, n_mels=32)
    save_atomic(
        {"model": AudioTagger(6, cfg).state_dict(), "config": model_snapshot(cfg, *_classes(tiny_root))}, checkpoint
    )
    with exclusive(tmp_path / folder / ".lock", "held by the test"):
        result = psl(*command, "--data", str(tiny_root), cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert f"{folder} is being written by pid {os.getpid()}" in result.stderr, result.stderr


def _classes(root: Path) -> tuple[list[str], list[str]]:
    from psl.data.store import ClipStore

    classes = ClipStore(root / "eval").classes
    return list(classes.ids), list(classes.names)


def test_a_full_disk_while_writing_names_the_folder_and_keeps_the_blocks(tmp_path, monkeypatch):
    writer = RaggedWriter(tmp_path / "store", "data.bin", np.dtype("<i2"))
    writer.append("a", np.arange(5, dtype=np.int16))
    writer.append("b", np.arange(7, dtype=np.int16))

    def full(_data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer._data, "write", full)
    with pytest.raises(OSError, match=r"No space left on device while writing 'c': .*\.store\.partial") as caught:
        with writer.closing_on_error():
            writer.append("c", np.arange(3, dtype=np.int16))
    assert caught.value.errno == errno.ENOSPC
    resumed = RaggedWriter(tmp_path / "store", "data.bin", np.dtype("<i2"))
    assert resumed.done_ids == {"a", "b"} and resumed.rows == 12


def test_a_full_disk_while_cutting_a_torn_journal_keeps_the_recorded_blocks(tmp_path):
    """A writer killed mid-line leaves a torn journal; the next one cuts the torn line off. If
    that rewrite fails (here: a file-size limit below the journal's size, as a full disk), the
    journal must still hold every recorded block, not be left truncated."""
    writer = RaggedWriter(tmp_path / "store", "data.bin", np.dtype("<i2"))
    for k in range(40):
        writer.append(f"clip-{k}", np.arange(5, dtype=np.int16))
    writer.close()
    journal = partial_dir(tmp_path / "store") / "journal.jsonl"
    with open(journal, "a") as f:
        f.write('{"id": "clip-40", "ro')  # the kill
    limited = f"""
import resource, signal, sys
import numpy as np
from psl.data.ragged import RaggedWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))
try:
    RaggedWriter({str(tmp_path / "store")!r}, "data.bin", np.dtype("<i2"))
except OSError as error:
    sys.exit(f"refused: {{error}}")
"""
    result = subprocess.run([sys.executable, "-c", limited], capture_output=True, text=True)
    assert "refused: [Errno 27] File too large" in result.stderr, result.stderr
    assert "journal.jsonl" in result.stderr, "the error names the journal (so it came from its repair)"
    resumed = RaggedWriter(tmp_path / "store", "data.bin", np.dtype("<i2"))
    assert resumed.done_ids == {f"clip-{k}" for k in range(40)} and resumed.rows == 200


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"step": 1}, path)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left on device\); last.pt is unchanged: .*last.pt") as caught:
        save_atomic({"step": 2}, path)
    assert caught.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert load_checkpoint(path) == {"step": 1}
    assert list(tmp_path.iterdir()) == [path], "no temporary file is left behind"


def test_a_best_checkpoint_lost_to_a_full_disk_still_resumes(tiny_root, tracking, tmp_path, monkeypatch):
    """The disk fills as the second best.pt is written: the run stops, last.pt still names a
    best step whose checkpoint exists, and --resume finishes once there is room."""
    resolved = resolve_config("tiny", None, ["train.epochs=3", "train.eval_every_steps=2"], "teacher")
    best_writes = []

    def filling(obj, path):
        if path.name == "best.pt" and best_writes:  # the second best.pt meets a full disk
            raise OSError(errno.ENOSPC, "cannot write the checkpoint (No space left on device)", str(path))
        if path.name == "best.pt":
            best_writes.append(obj["state"]["step"])
        save_atomic(obj, path)

    monkeypatch.setattr("psl.trainer.save_atomic", filling)
    out = tmp_path / "teacher"
    with pytest.raises(OSError, match="No space left"):
        run_teacher(resolved, out=out, data=tiny_root, progress=False)
    last, best = load_checkpoint(out / "last.pt"), load_checkpoint(out / "best.pt")
    assert last["state"]["best_step"] == best["state"]["step"] == best_writes[0]
    monkeypatch.undo()
    result = run_teacher(resolved, out=out, data=tiny_root, resume=True, progress=False)
    assert load_checkpoint(out / "last.pt")["state"]["best_step"] == load_checkpoint(out / "best.pt")["state"]["step"]
    assert result.test.mAP > 0


@pytest.fixture
def small_disk(tmp_path):
    """A 160 KiB tmpfs (needs root and mount rights; skipped where there are none)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (the simulated full-disk tests cover the writer)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_ingest_on_a_full_then_read_only_disk(small_disk, tmp_path):
    """A real full disk stops the ingest with one line naming the folder; once there is
    room it continues from the clips written. A read-only disk is named the same way."""
    write_many(tmp_path / "fsd", 12)  # 12 clips of 64 KB: more than the disk holds
    command = ["data", "fsd50k", "--root", str(tmp_path / "fsd"), "--workers", "1", "--out", str(small_disk / "out")]
    full = psl(*command)
    (error,) = [line for line in full.stderr.splitlines() if "error:" in line]  # besides the progress bar
    assert full.returncode == 2 and "No space left on device" in error and str(small_disk / "out") in error, error
    kept = (partial_dir(small_disk / "out" / "train") / "journal.jsonl").read_text().count("\n")
    assert kept >= 1
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    resumed = psl(*command)
    assert resumed.returncode == 0 and f"{kept} resumed from an earlier run" in resumed.stdout, resumed.stderr
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    read_only = psl(*command[:-1], str(small_disk / "other"))
    assert read_only.returncode == 2 and "Read-only file system" in read_only.stderr, read_only.stderr
    assert str(small_disk / "other") in read_only.stderr


def test_a_full_disk_while_mlflow_stores_an_artifact_is_one_line_naming_it(
    small_disk, tmp_path, tiny_teacher, tiny_root, new_store
):
    """MLflow's own copy into the artifact store reports ENOSPC without a file name: psl names
    the artifact, and a re-run once there is room logs the evaluation."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "mlruns").symlink_to(small_disk)  # the store's default artifact root
    env = {**os.environ, "MLFLOW_TRACKING_URI": new_store(work), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    (small_disk / "filler").write_bytes(b"\0" * (150 * 1024))  # 10 KiB left: less than the figures need
    command = ["evaluate", "--model", str(tiny_teacher.best_checkpoint), "--data", str(tiny_root)]
    full = psl(*command, cwd=work, env=env)
    (error,) = [line for line in full.stderr.splitlines() if "error:" in line]
    assert full.returncode == 2 and "No space left on device while logging the MLflow artifact" in error, full.stderr
    assert str(work / "mlruns") in error or str(small_disk) in error, error
    (small_disk / "filler").unlink()
    again = psl(*command, cwd=work, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
