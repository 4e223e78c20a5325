"""`psl pipeline`, the MLproject entry points and the model registry, on the tiny profile."""

import os
import shutil
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from psl.config import ConfigError
from psl.provenance import PACKAGE, code_identity, tree_identity
from psl.stages.common import resolve_config
from psl.tracking import experiment_id, log_model, run_of_model
from psl.stages.pipeline import (
    FIXED_BUDGET_EVALS,
    PipelineConfig,
    Stages,
    StudentVariant,
    crown,
    results_table,
    run_pipeline,
)

REPO = Path(__file__).resolve().parent.parent
# What `mlflow run` needs of the checkout.
PROJECT_FILES = (
    "MLproject",
    "mlproject",
    "psl",
    "experiments",
    "setup.py",
    "csrc",
    "requirements.txt",
    "requirements-build.txt",
)
STUDENTS = "pipeline.students=[psl-1s, ts-1s] student.tracking.log_model=true"  # a space in a list: run.sh keeps it


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The project in a folder of its own (symlinks to the checkout), so that the data/ and
    runs/ that entry points write land in the test's folder; run.sh's `python` is this one."""
    root = tmp_path / "project"
    root.mkdir()
    for name in PROJECT_FILES:
        (root / name).symlink_to(REPO / name)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return root


def entry_point(project: Path, name: str, **parameters) -> str:
    submitted = mlflow.projects.run(
        str(project), entry_point=name, parameters=parameters, env_manager="local", experiment_name="psl"
    )
    assert submitted.get_status() == "FINISHED"
    return submitted.run_id


def runs(**tags) -> list:
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return mlflow.search_runs(experiment_names=["psl"], filter_string=query, output_format="list")


def test_pipeline_entry_point_logs_nested_stage_runs(project, tiny_root, tracking):
    parent_id = entry_point(project, "pipeline", profile="tiny", data=str(tiny_root), set=STUDENTS)
    parent = mlflow.get_run(parent_id)
    assert parent.data.tags["psl.stage"] == "pipeline"
    assert parent.data.params["profile"] == "tiny"  # logged by MLflow, beside the stage's own params
    assert parent.data.params["pipeline.students"] == '["psl-1s", "ts-1s"]'
    nested = runs(**{"mlflow.parentRunId": parent_id})
    assert all(r.info.status == "FINISHED" for r in nested)
    children = {r.data.tags["psl.variant"]: r for r in nested if r.data.tags["psl.stage"] != "transfer"}
    assert sorted(children) == ["psl-1s", "psl-frames", "teacher", "ts-1s", "weak"]
    # The baseline and both students are transferred to the FSD-like set by a linear probe.
    transferred = {r.data.tags["psl.model_run_id"]: r for r in nested if r.data.tags["psl.stage"] == "transfer"}
    assert set(transferred) == {children[v].info.run_id for v in ("psl-1s", "ts-1s", "weak")}
    assert all("transfer/fsd50k/linear/lwlrap" in r.data.metrics for r in transferred.values())
    teacher, labels = children["teacher"].info.run_id, children["psl-frames"].info.run_id
    for variant, alpha in (("psl-1s", "1.0"), ("ts-1s", "0.5")):
        student = children[variant]
        assert student.data.tags["psl.teacher_run_id"] == teacher
        assert student.data.tags["psl.labels_run_id"] == labels
        assert student.data.params["alpha"] == alpha and student.data.params["chunk.length_s"] == "1.0"
        assert {"test/mAP", "test/dprime", "val/mAP", "train/loss"} <= set(student.data.metrics)
        artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(student.info.run_id)}
        assert {"checkpoints", "per_class_ap.csv", "per_class_ap.png"} <= artifacts
    assert children["psl-frames"].data.tags["psl.teacher_run_id"] == teacher
    results = mlflow.artifacts.load_text(f"runs:/{parent_id}/results.txt")
    for variant in ("psl-1s", "ts-1s", "weak", "teacher"):
        assert f"{children[variant].data.metrics['test/mAP']:.4f}" in results
    assert {"results.txt", "test_mAP.png", "config"} <= {
        a.path for a in mlflow.MlflowClient().list_artifacts(parent_id)
    }
    # The student better on val is registered and, being the first, becomes the champion.
    best = max(("psl-1s", "ts-1s"), key=lambda v: children[v].data.metrics["val/best_mAP"])
    assert run_of_model("models:/psl-student@champion") == children[best].info.run_id


def test_pipeline_reuses_finished_stages_unless_forced(tiny_root, tracking):
    resolved = resolve_config("tiny", None, ["pipeline.students=[psl-1s]", "pipeline.baseline=false"], None)
    first = run_pipeline(resolved, tiny_root, progress=False)
    assert [r.stage for r in first.rows] == ["teacher", "label", "student", "transfer"]
    assert [r.status for r in first.rows] == ["ran"] * 4
    again = run_pipeline(resolved, tiny_root, progress=False)
    assert [r.status for r in again.rows] == ["reused"] * 4
    assert [r.run_id for r in again.rows] == [r.run_id for r in first.rows]
    assert runs(**{"mlflow.parentRunId": again.run_id}) == []
    # A changed student reuses teacher and labels and trains only itself.
    changed = resolve_config(
        "tiny", None, ["pipeline.students=[psl-1s]", "pipeline.baseline=false", "student.train.lr=0.001"], None
    )
    partly = run_pipeline(changed, tiny_root, progress=False)
    assert [r.status for r in partly.rows] == ["reused", "reused", "ran", "ran"]
    forced = run_pipeline(resolved, tiny_root, force=True, progress=False)
    assert [r.status for r in forced.rows] == ["ran"] * 4
    assert not {r.run_id for r in forced.rows} & {r.run_id for r in first.rows}


def test_a_failing_stage_fails_the_pipeline_run(tiny_root, tracking, monkeypatch):
    def broken_student(*args, **kwargs):
        raise RuntimeError("the student broke")

    monkeypatch.setattr("psl.stages.pipeline.run_student", broken_student)
    resolved = resolve_config("tiny", None, ["pipeline.students=[psl-1s]", "pipeline.transfer=[]"], None)
    with pytest.raises(RuntimeError, match="the student broke"):
        run_pipeline(resolved, tiny_root, progress=False)
    (parent,) = runs(**{"psl.stage": "pipeline"})
    assert parent.info.status == "FAILED" and "the student broke" in parent.data.tags["psl.error"]
    finished = {r.data.tags["psl.stage"] for r in runs(**{"mlflow.parentRunId": parent.info.run_id})}
    assert finished == {"teacher", "label"}


def test_every_missing_input_is_named_before_any_stage_runs(tiny_root, tracking, tmp_path):
    root = tmp_path / "partial"
    root.mkdir()
    for split in ("full", "balanced", "eval"):  # no val split, no transfer set
        (root / split).symlink_to(tiny_root / split)
    resolved = resolve_config("tiny", None, ["pipeline.students=[psl-1s]"], None)
    with pytest.raises(ConfigError, match="missing clip stores, nothing was run") as error:
        run_pipeline(resolved, root, progress=False)
    assert f"{root / 'val'} (for teacher)" in str(error.value)
    assert f"{root / 'fsd' / 'train'} (for transfer (or skip it: --set pipeline.transfer=[]))" in str(error.value)
    assert runs() == []


def test_changed_code_runs_a_finished_stage_again(tiny_root, tracking, monkeypatch):
    settings = ["pipeline.students=[psl-1s]", "pipeline.baseline=false", "pipeline.transfer=[]"]
    resolved = resolve_config("tiny", None, settings, None)
    first = run_pipeline(resolved, tiny_root, progress=False)
    assert {r.run_id: mlflow.get_run(r.run_id).data.tags["psl.code"] for r in first.rows} == {
        r.run_id: code_identity() for r in first.rows
    }
    trained = [r for r in first.rows if r.stage != "label"]
    assert all(0 < r.best_step <= r.steps for r in trained)  # the table reports how long each trained
    assert f"{trained[0].best_step}/{trained[0].steps}" in results_table(first.rows).splitlines()[1]
    monkeypatch.setattr("psl.stages.pipeline.code_identity", lambda: "after-a-bug-fix")
    again = run_pipeline(resolved, tiny_root, progress=False)
    assert [r.status for r in again.rows] == ["ran"] * 3


def test_code_identity_follows_every_source_file(tmp_path):
    package = tmp_path / "psl"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = tree_identity(package)
    assert before == tree_identity(PACKAGE)
    source = package / "stages" / "label.py"
    source.write_text(source.read_text() + "\n# a fix\n")
    assert tree_identity(package) != before


def test_configs_are_checked_before_any_work(tiny_root, tracking):
    resolved = resolve_config("tiny", None, ["pipeline.students=[psl-1s]", "student.train.batch_size=0"], None)
    with pytest.raises(ConfigError, match="batch_size"):
        run_pipeline(resolved, tiny_root, progress=False)
    assert runs() == []


def test_student_entry_point_prepares_data_teacher_and_labels(project, tracking):
    student_id = entry_point(project, "student", profile="tiny")
    assert (project / "data" / "synth-tiny" / "balanced").is_dir()  # the benchmark was generated
    (teacher,) = runs(**{"psl.stage": "teacher"})
    (labels,) = runs(**{"psl.stage": "label"})
    student = mlflow.get_run(student_id)
    assert student.data.tags["psl.stage"] == "student"
    assert student.data.tags["psl.labels_run_id"] == labels.info.run_id
    assert student.data.tags["psl.teacher_run_id"] == teacher.info.run_id
    assert student.data.params["labels.source"] == labels.info.run_id
    assert "mlflow.parentRunId" not in teacher.data.tags  # upstream stages are runs of their own
    # A second student reuses them.
    entry_point(project, "student", profile="tiny", set="alpha=0.5")
    assert len(runs(**{"psl.stage": "teacher"})) == len(runs(**{"psl.stage": "label"})) == 1


def fake_student(val_mAP: float, test_mAP: float = 0.5) -> str:
    """A finished run with a logged model and val and test mAP, as a student stage leaves one."""
    with mlflow.start_run(experiment_id=experiment_id(), tags={"psl.variant": "psl-1s"}) as run:
        log_model(torch.nn.Linear(2, 2))
        mlflow.log_metrics({"val/best_mAP": val_mAP, "test/mAP": test_mAP})
    return run.info.run_id


def test_champion_alias_moves_only_to_a_student_better_on_val(tiny_root, tracking):
    settings = [
        "pipeline.students=[psl-1s]",
        "pipeline.baseline=false",
        "pipeline.transfer=[]",
        "student.tracking.log_model=true",
    ]
    resolved = resolve_config("tiny", None, settings, None)
    first = run_pipeline(resolved, tiny_root, progress=False)
    holder_run = first.rows[-1].run_id
    holder_val = mlflow.get_run(holder_run).data.metrics["val/best_mAP"]
    assert "first champion" in first.champion and f"val mAP {holder_val:.4f}" in first.champion
    stages, cfg = Stages(resolved, tiny_root), PipelineConfig()
    # Better on eval but worse on val: eval never decides.
    worse = fake_student(holder_val - 0.05, test_mAP=1.0)
    assert "stays v1" in crown(stages, [worse], cfg, "val")
    assert run_of_model("models:/psl-student@champion") == holder_run
    # A holder validated on other data is scored again on this val split before comparing.
    mlflow.MlflowClient().set_model_version_tag("psl-student", "1", "psl.val_manifest_sha256", "other")
    assert f"{holder_val:.4f}" in crown(stages, [worse], cfg, "val")
    assert run_of_model("models:/psl-student@champion") == holder_run
    better = fake_student(holder_val + 0.05, test_mAP=0.0)
    assert "is now champion" in crown(stages, [better], cfg, "val")
    assert run_of_model("models:/psl-student@champion") == better
    assert run_of_model("models:/psl-student/1") == holder_run


def test_student_variant_names():
    assert StudentVariant.parse("ts-2s") == StudentVariant("ts-2s", 0.5, 2.0, "grid", False)
    assert StudentVariant.parse("psl-2.5s-crop") == StudentVariant("psl-2.5s-crop", 1.0, 2.5, "crop", False)
    assert StudentVariant.parse("psl-10s-isolated").isolated
    with pytest.raises(ValueError, match="unknown student variant 'psl-2'"):
        StudentVariant.parse("psl-2")
    with pytest.raises(ConfigError, match="unknown student variant"):
        run_pipeline(resolve_config("tiny", None, ["pipeline.students=[weak-2s]"], None))


def test_fixed_update_budget_gives_the_students_and_the_baseline_the_same_steps(tiny_root, tracking):
    settings = ["pipeline.students=[psl-1s, psl-2s]", "pipeline.transfer=[]", "pipeline.fixed_updates=20"]
    result = run_pipeline(resolve_config("tiny", None, settings, None), tiny_root, progress=False)
    trained = [r for r in result.rows if r.stage in ("student", "baseline")]
    assert len(trained) == 3
    assert all((r.steps, r.epochs) == (20, FIXED_BUDGET_EVALS) for r in trained)
    with pytest.raises(ValueError, match="multiple of 10"):
        PipelineConfig(fixed_updates=15)
