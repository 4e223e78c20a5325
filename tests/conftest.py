import os
import random
import zlib

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


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """A fresh SQLite MLflow store for one test, in its own working directory."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    # mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID (for child processes); set then
    # delete it here so that the id of this test's store is removed after the test.
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)
