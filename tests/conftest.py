import os
import random
import shutil
import subprocess
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

# Fresh random inputs on every run; the header shows the seed to reproduce a failure.
SEED = int(os.environ.get("PSL_TEST_SEED", random.randrange(2**31)))


def pytest_report_header(config):
    return f"psl test seed: {SEED} (PSL_TEST_SEED={SEED} reproduces this run)"


@pytest.fixture
def rng(request) -> torch.Generator:
    """A generator seeded from the run's seed and the test's id."""
    return torch.Generator().manual_seed(SEED ^ zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """The `tiny` synthetic benchmark, generated once per test session."""
    from psl.config import profile_path
    from psl.data.synth.config import load_synth_config
    from psl.data.synth.generate import generate

    root = tmp_path_factory.mktemp("data") / "synth-tiny"
    generate(load_synth_config(profile_path("tiny")), root, workers=2, progress=False)
    return root


@pytest.fixture(scope="session")
def new_store(tmp_path_factory):
    """new_store(folder) -> the URI of a fresh, empty MLflow SQLite store, folder/mlflow.db.
    It is a copy of one made once per session: MLflow builds a new store's tables with
    migrations that take seconds, in every process that opens a store still empty."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("mlflow-template")
    SqlAlchemyStore(f"sqlite:///{folder}/mlflow.db", str(folder / "mlruns")).engine.dispose()

    def make(into: Path) -> str:
        shutil.copyfile(folder / "mlflow.db", Path(into) / "mlflow.db")
        return f"sqlite:///{into}/mlflow.db"

    return make


@pytest.fixture
def tracking(request, tmp_path, monkeypatch, new_store):
    """A fresh SQLite MLflow store for one test (tmp_path/mlflow.db, there from the start),
    in its own working directory. For a test that uses `teacher_run`, the store starts as a
    copy of the session teacher's store, which holds that teacher's run alone."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    # mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID (for child processes); set then
    # delete it here so that the id of this test's store is removed after the test.
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")
    if "teacher_run" in request.fixturenames:
        shutil.copyfile(request.getfixturevalue("tiny_teacher").store, tmp_path / "mlflow.db")
        uri = f"sqlite:///{tmp_path}/mlflow.db"
    else:
        uri = new_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@contextmanager
def logging_to(uri: str, folder: Path):
    """MLflow logs to `uri` in this process, with `folder` as the working directory, until
    the block ends (for session fixtures, which cannot use `tracking`)."""
    import mlflow

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_EXPERIMENT_ID", "")
        patch.delenv("MLFLOW_EXPERIMENT_ID")
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(None)


@dataclass(frozen=True)
class TinyTeacher:
    run_id: str
    best_checkpoint: Path
    out: Path  # the stage's folder: best.pt, last.pt, mlflow_run_id
    tracking_uri: str  # the store it logged to, which holds nothing else
    store: Path  # that store's file


@pytest.fixture(scope="session")
def tiny_teacher(tiny_root, tmp_path_factory, new_store) -> TinyTeacher:
    """A teacher of the tiny benchmark, trained once per session by `psl teacher` in a
    process of its own (runners.short_teacher_command: tests/test_kill_resume.py compares the
    teachers it kills with this one), logged to a store of its own."""
    from runners import short_teacher_command, stage_env

    folder = tmp_path_factory.mktemp("teacher")
    uri = new_store(folder)
    out = folder / "teacher"
    command = [*short_teacher_command(tiny_root), str(out)]
    done = subprocess.run(command, env=stage_env(uri), cwd=folder, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = (out / "mlflow_run_id").read_text().strip()
    return TinyTeacher(run_id, out / "best.pt", out, uri, folder / "mlflow.db")


@pytest.fixture
def teacher_run(tiny_teacher, tracking) -> TinyTeacher:
    """The session's tiny teacher, its run in this test's tracking store (`tracking` starts
    that store as a copy of the teacher's; the artifacts stay in the teacher's folder)."""
    return tiny_teacher


@pytest.fixture(scope="session")
def tiny_labels(tiny_teacher, tiny_root, tmp_path_factory, new_store) -> Path:
    """`psl label` of the session's teacher on the tiny benchmark (frames, the `balanced` and
    `val` splits), made once per session: the folder, logged to a store of its own."""
    from psl.stages.label import run_label

    folder = tmp_path_factory.mktemp("labels")
    with logging_to(new_store(folder), folder):
        run_label(str(tiny_teacher.best_checkpoint), tiny_root, folder / "labels", progress=False)
    return folder / "labels"
