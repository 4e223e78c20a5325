"""`psl teacher import`: the released teacher as a psl teacher run that labels, evaluates and
drives the paper preset's pipeline, on a tiny store with AudioSet's 527 classes."""

from __future__ import annotations

import hashlib

import mlflow
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from psl.checkpoints import load_tagger
from psl.cli import app
from psl.config import experiments_dir
from psl.data.classes import audioset_classes
from psl.data.store import StoreWriter
from psl.labels import LabelStore
from psl.stages.common import resolve_config
from psl.stages.evaluate import run_evaluate
from psl.stages.label import run_label
from psl.stages.pipeline import run_pipeline
from psl.stages.student import run_student
from psl.stages.weak import import_teacher
from test_release import random_release

runner = CliRunner()


@pytest.fixture(scope="module")
def audioset_root(tmp_path_factory):
    """balanced, val and eval splits of 6 noise clips (1.5-3 s) with AudioSet class labels."""
    root = tmp_path_factory.mktemp("audioset")
    rng = np.random.default_rng(0)
    for split in ("balanced", "val", "eval"):
        writer = StoreWriter(root / split, audioset_classes())
        for i in range(6):
            samples = (rng.standard_normal(int(16000 * rng.uniform(1.5, 3.0))) * 3000).astype(np.int16)
            labels = [0, 1 + i % 3] if i % 2 else [1 + i % 3]  # every listed class has a positive
            writer.append(f"{split}{i}", samples, labels, f"{split}{i}.wav")
        writer.finish({"dataset": "audioset"})
    return root


@pytest.fixture(scope="module")
def release_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("release") / "mobilenetv2_mAP40_53.pt"
    torch.save(random_release().state_dict(), path)
    return path


def test_import_makes_a_teacher_run_with_provenance(release_file, audioset_root, tracking, tmp_path):
    out = tmp_path / "imported"
    result = runner.invoke(
        app, ["teacher", "import", str(release_file), "--data", str(audioset_root), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    (run,) = mlflow.search_runs(experiment_names=["psl"], output_format="list")
    tags = run.data.tags
    assert (tags["psl.stage"], tags["psl.variant"]) == ("teacher", "teacher-imported")
    assert tags["psl.source_sha256"] == hashlib.sha256(release_file.read_bytes()).hexdigest()
    assert 0 < run.data.metrics["test/mAP"] <= 1
    model, config = load_tagger(out / "best.pt")
    assert config["class_ids"] == list(audioset_classes().ids) and config["variant"] == "teacher-imported"
    reference = random_release()
    wave = torch.randn(1, 32000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(model(wave).clip, reference(wave)[0], rtol=0, atol=1e-4)


def test_an_imported_teacher_labels_evaluates_and_teaches_by_run_id(release_file, audioset_root, tracking, tmp_path):
    teacher = import_teacher(release_file, out=tmp_path / "imported")
    run_label(teacher.run_id, audioset_root, tmp_path / "labels", splits=("balanced",), progress=False)
    store = LabelStore(tmp_path / "labels" / "balanced")
    assert store.meta["teacher_run_id"] == teacher.run_id
    assert len(store.ids) == 6 and store.frames("balanced0").shape[1] == 527
    assert 0 < run_evaluate(teacher.run_id, audioset_root).metrics.mAP <= 1
    overrides = ["model.width=0.25", "train.epochs=1", "train.workers=0", "tracking.log_model=false"]
    resolved = resolve_config(None, experiments_dir() / "paper-audioset.yaml", overrides, "student")
    online = run_student(resolved, teacher=teacher.run_id, out=tmp_path / "online", data=audioset_root, progress=False)
    assert mlflow.get_run(online.run_id).data.tags["psl.teacher_run_id"] == teacher.run_id


def test_a_missing_release_file_is_named(tracking, tmp_path):
    result = runner.invoke(app, ["teacher", "import", str(tmp_path / "nosuch.pt")])
    assert result.exit_code == 2 and "nosuch.pt does not exist" in result.output


def test_paper_preset_pipeline_runs_on_the_imported_teacher(release_file, audioset_root, tracking):
    overrides = [
        f"teacher.import={release_file}",
        "pipeline.students=[psl-1s-isolated]",
        "pipeline.baseline=false",
        "pipeline.label_batch_size=8",
        "student.model.width=0.25",
        "student.train.epochs=1",
        "student.train.workers=0",
        "student.tracking.log_model=false",
    ]
    resolved = resolve_config(None, experiments_dir() / "paper-audioset.yaml", overrides, None)
    result = run_pipeline(resolved, audioset_root, progress=False)
    assert [(r.stage, r.variant) for r in result.rows] == [
        ("teacher", "teacher-imported"),
        ("label", "psl-1s-isolated"),
        ("student", "psl-1s-isolated"),
    ]
    again = run_pipeline(resolved, audioset_root, progress=False)
    assert [r.status for r in again.rows] == ["reused"] * 3
