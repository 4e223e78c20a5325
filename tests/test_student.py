"""Stages label, student and baseline on the tiny profile: lineage, variants, refusals.
`teacher_run` (conftest.py) is the session's tiny teacher, its run in the test's store."""

import mlflow
import pytest
import torch

from psl.labels import LabelMismatch, LabelStore
from psl.models.tagger import AudioTagger, ModelConfig
from psl.stages.common import resolve_config
from psl.stages.label import run_label
from psl.objectives import bce, online_psl_loss
from psl.stages.weak import run_baseline
from runners import tiny_student, torchrun_psl


def test_label_then_student_records_lineage(tiny_root, teacher_run, tmp_path):
    labelled = run_label(teacher_run.run_id, tiny_root, tmp_path / "labels", progress=False)
    label_run = mlflow.get_run(labelled.run_id)
    assert label_run.data.tags["psl.stage"] == "label"
    assert label_run.data.tags["psl.teacher_run_id"] == teacher_run.run_id
    assert "labels/balanced/dropped_tags_recovered" in label_run.data.metrics  # synthetic data has strong truth
    client = mlflow.MlflowClient()
    assert {a.path for a in client.list_artifacts(labelled.run_id)} == {"labels", "analysis"}
    figures = {a.path for a in client.list_artifacts(labelled.run_id, "analysis/balanced")}
    assert figures == {f"analysis/balanced/{n}.png" for n in ("tags_per_clip", "added_classes", "recovery")}
    for source in (str(tmp_path / "labels"), labelled.run_id):  # a folder, or the label run's artifact
        out = tmp_path / f"student-{len(source)}"
        result = tiny_student(tiny_root, out, "chunk.sampling=crop", "alpha=0.5", labels=source)
        run = mlflow.get_run(result.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["psl.stage"] == "student" and run.data.tags["psl.variant"] == "ts-1s-crop"
        assert run.data.tags["psl.labels_run_id"] == labelled.run_id
        assert run.data.tags["psl.teacher_run_id"] == teacher_run.run_id
        assert run.data.params["chunk.length_s"] == "1.0" and run.data.params["alpha"] == "0.5"
        assert "test/mAP" in run.data.metrics and "val/mAP" in run.data.metrics


def test_student_refuses_labels_of_other_data(tiny_root, teacher_run, tmp_path):
    run_label(teacher_run.run_id, tiny_root, tmp_path / "labels", splits=("val",), progress=False)
    (tmp_path / "labels" / "val").rename(tmp_path / "labels" / "balanced")  # labels of `val` posing as `balanced`
    with pytest.raises(LabelMismatch, match="another version"):
        tiny_student(tiny_root, tmp_path / "s", labels=str(tmp_path / "labels"))


def test_baseline_is_the_weak_variant(tiny_root, tracking, tmp_path):
    resolved = resolve_config("tiny", None, [], "baseline")
    result = run_baseline(resolved, out=tmp_path / "b", data=tiny_root, progress=False)
    tags = mlflow.get_run(result.run_id).data.tags
    assert tags["psl.stage"] == "baseline" and tags["psl.variant"] == "weak"


def test_isolated_labels_need_their_own_grid(tiny_root, teacher_run, tmp_path):
    iso = tmp_path / "iso"
    run_label(teacher_run.run_id, tiny_root, iso, splits=("balanced",), isolated=(1.0, 1.0), progress=False)
    result = tiny_student(tiny_root, tmp_path / "s1", labels=str(iso))
    assert mlflow.get_run(result.run_id).data.tags["psl.variant"] == "psl-1s-isolated"
    with pytest.raises(LabelMismatch, match="the student must use that grid"):
        tiny_student(tiny_root, tmp_path / "s2", "chunk.sampling=crop", labels=str(iso))


def test_online_teacher_mode(tiny_root, teacher_run, tmp_path):
    result = tiny_student(tiny_root, tmp_path / "online", "train.epochs=1", teacher=teacher_run.run_id)
    tags = mlflow.get_run(result.run_id).data.tags
    assert tags["psl.variant"] == "psl-1s-online" and tags["psl.teacher_run_id"] == teacher_run.run_id


def test_online_loss_targets_are_the_teacher_on_the_same_chunks():
    torch.manual_seed(0)
    teacher = AudioTagger(4, ModelConfig(width=0.25, n_mels=32)).eval()
    student = AudioTagger(4, ModelConfig(width=0.25, n_mels=32)).eval()
    batch = {
        "wave": torch.randn(3, 16000) * 0.1,
        "lengths": torch.tensor([16000, 9000, 16000]),
        "label": torch.zeros(3, 4),
    }
    output = student(batch["wave"], batch["lengths"])
    loss = online_psl_loss(teacher, 1.0, "fp32")(output, batch, None)
    torch.testing.assert_close(loss, bce(output.clip, teacher(batch["wave"], batch["lengths"]).clip))


def test_labelling_sharded_across_two_torchrun_ranks_equals_one_process(tiny_root, teacher_run, tracking, tmp_path):
    checkpoint = str(teacher_run.best_checkpoint)
    single = run_label(checkpoint, tiny_root, tmp_path / "single", progress=False)
    torchrun_psl(
        "label",
        "--teacher",
        checkpoint,
        "--data",
        str(tiny_root),
        "--out",
        str(tmp_path / "sharded"),
        tracking_uri=tracking,
    )
    for split, labels in single.stores.items():
        sharded = LabelStore(tmp_path / "sharded" / split)
        assert sharded.ids == labels.ids and sharded.meta["manifest_sha256"] == labels.meta["manifest_sha256"]
        for cid in labels.ids:
            assert (sharded.frames(cid) == labels.frames(cid)).all(), cid
    assert not list((tmp_path / "sharded").glob(".*shards"))
    assert len(mlflow.search_runs(experiment_names=["psl"], filter_string="tags.`psl.stage` = 'label'")) == 2


def test_label_refuses_to_mix_labellings_in_one_folder(tiny_root, teacher_run, tmp_path):
    out = tmp_path / "labels"
    run_label(teacher_run.run_id, tiny_root, out, splits=("val",), progress=False)
    with pytest.raises(LabelMismatch, match="another teacher or labelling mode"):
        run_label(teacher_run.run_id, tiny_root, out, splits=("val",), isolated=(1.0, 1.0), progress=False)
    again = run_label(teacher_run.run_id, tiny_root, out, splits=("val",), progress=False)
    assert again.stores["val"].meta["mode"] == "frames"
