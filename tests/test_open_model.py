"""One way to open a model (psl.checkpoints.open_tagger): a file, a run id or a models:/ URI
becomes a checked tagger with its provenance; a mistyped path is never taken for a run."""

import hashlib
from types import SimpleNamespace

import pytest

import psl.tracking
from psl.checkpoints import model_snapshot, open_tagger
from psl.errors import LabelMismatch, MissingInput
from psl.models.tagger import AudioTagger, ModelConfig
from psl.trainer import save_atomic

RUN_ID = "0123456789abcdef0123456789abcdef"
SMALL = ModelConfig(width=0.25, n_mels=32)


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "best.pt"
    save_atomic({"model": AudioTagger(3, SMALL).state_dict(), "config": model_snapshot(SMALL, "abc", "ABC")}, path)
    return path


def no_mlflow(monkeypatch):
    def fails(*args):
        raise AssertionError("looked up in MLflow")

    monkeypatch.setattr(psl.tracking, "run_of_model", fails)
    monkeypatch.setattr(psl.tracking, "download_checkpoint", fails)


def test_a_file_opens_as_a_ready_tagger_with_its_hash(checkpoint, monkeypatch):
    no_mlflow(monkeypatch)
    opened = open_tagger(str(checkpoint))
    assert isinstance(opened.model, AudioTagger) and not opened.model.training
    assert opened.config["class_names"] == ["A", "B", "C"] and opened.run_id is None
    assert opened.sha256 == hashlib.sha256(checkpoint.read_bytes()).hexdigest()


def test_a_mistyped_path_is_named_as_missing_not_looked_up_as_a_run(tmp_path, monkeypatch):
    no_mlflow(monkeypatch)
    with pytest.raises(MissingInput, match=r"nope\.pt: no such checkpoint file"):
        open_tagger(str(tmp_path / "nope.pt"))
    with pytest.raises(MissingInput, match="a folder, not a checkpoint file"):
        open_tagger(tmp_path)


def test_a_run_id_opens_the_checkpoint_its_run_logged(checkpoint, monkeypatch):
    fetched = []

    def download(run_id, dest):
        fetched.append(run_id)
        return checkpoint

    monkeypatch.setattr(psl.tracking, "download_checkpoint", download)
    opened = open_tagger(RUN_ID)
    assert fetched == [RUN_ID] and opened.run_id == RUN_ID


def test_a_model_of_other_classes_is_refused_for_the_store(checkpoint):
    other = SimpleNamespace(classes=SimpleNamespace(ids=("x", "y", "z")), path="data/eval")
    with pytest.raises(LabelMismatch, match="the teacher's 3 classes are not the classes of data/eval"):
        open_tagger(checkpoint, stores=[other], role="teacher")
    same = SimpleNamespace(classes=SimpleNamespace(ids=("a", "b", "c")), path="data/eval")
    assert open_tagger(checkpoint, stores=[same]).config["class_ids"] == ["a", "b", "c"]
