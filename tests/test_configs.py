"""Every shipped experiment file builds into its stages' typed configs; bad keys are named."""

import dataclasses
from pathlib import Path

import pytest

from psl.config import ConfigError, as_dict, build, experiments_dir, read_yaml
from psl.data.synth.config import SynthConfig
from psl.stages.common import default_out, resolve_config
from psl.stages.pipeline import PipelineConfig
from psl.stages.transfer import TransferConfig
from psl.stages.student import StudentConfig
from psl.stages.weak import TeacherConfig
from psl.stages.training_stage import TaggerStageConfig

SECTIONS = {
    "synth": SynthConfig,
    "teacher": TeacherConfig,
    "baseline": TaggerStageConfig,
    "student": StudentConfig,
    "pipeline": PipelineConfig,
    "transfer": TransferConfig,
}


@pytest.mark.parametrize("path", sorted(experiments_dir().glob("*.yaml")), ids=lambda p: p.name)
def test_experiment_file_builds(path):
    data = read_yaml(path)
    assert set(data) <= set(SECTIONS), f"{path.name}: unknown sections {set(data) - set(SECTIONS)}"
    for section, value in data.items():
        build(SECTIONS[section], value, f"{path.name}: {section}")


def test_errors_name_file_and_key():
    with pytest.raises(ConfigError, match=r"f.yaml: student.chunk: unknown key 'lenght_s'"):
        build(StudentConfig, {"chunk": {"lenght_s": 2}}, "f.yaml: student")
    with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\]"):
        build(StudentConfig, {"alpha": 2.0}, "f.yaml: student")
    with pytest.raises(ConfigError, match=r"train.batch_size: expected int, got 'many'"):
        build(TaggerStageConfig, {"train": {"batch_size": "many"}}, "f.yaml: teacher")
    with pytest.raises(ConfigError, match=r"f.yaml: pipeline: label_amp must be bf16, fp16 or fp32, got 'fp64'"):
        build(PipelineConfig, {"label_amp": "fp64"}, "f.yaml: pipeline")
    with pytest.raises(ConfigError, match=r"amp must be bf16, fp16 or fp32, got 'fp64'"):
        build(TaggerStageConfig, {"train": {"amp": "fp64"}}, "f.yaml: teacher")


def test_the_paper_protocol_refuses_students_on_pooled_frame_labels():
    build(PipelineConfig, {"protocol": "paper", "students": ["psl-2s-isolated", "ts-5s-isolated"]}, "p")
    with pytest.raises(ConfigError, match="psl-2s would train on pooled frame labels: use psl-2s-isolated"):
        build(PipelineConfig, {"protocol": "paper", "students": ["psl-2s-isolated", "psl-2s"]}, "p.yaml: pipeline")


def test_paper_presets_differ_from_psl_only_by_switches():
    """The paper presets' models and recipes are the release's (DESIGN.md section 1)."""
    from psl.models.release import RELEASE_MODEL

    for name, width in (("paper-audioset.yaml", 1.0), ("synth-paper-demo.yaml", 0.35)):
        data = read_yaml(experiments_dir() / name)
        for section in ("baseline", "student"):
            cfg = build(StudentConfig if section == "student" else TaggerStageConfig, data[section], name)
            assert cfg.model == dataclasses.replace(RELEASE_MODEL, width=width)
            t = cfg.train
            assert (t.lr, t.batch_size, t.schedule, t.sampler, t.mixup) == (1e-3, 32, "constant", "shuffle", 0.0)
            assert (t.epochs, t.early_stop_patience, t.warmup_steps, t.grad_clip) == (300, 15, 0, 0.0)
        assert build(PipelineConfig, data["pipeline"], name).protocol == "paper"


def test_a_keyword_key_is_spelt_without_its_underscore():
    cfg = build(TeacherConfig, {"import": "teacher.pt"}, "t.yaml: teacher")
    assert cfg.import_ == "teacher.pt"
    assert as_dict(cfg)["import"] == "teacher.pt"
    with pytest.raises(ConfigError, match="unknown key 'import_'"):
        build(TeacherConfig, {"import_": "teacher.pt"}, "t.yaml: teacher")


def test_an_override_changes_only_its_own_section_of_a_shared_yaml_anchor(tmp_path):
    path = tmp_path / "shared.yaml"
    path.write_text("baseline:\n  train: &common {lr: 0.003}\nstudent:\n  train: *common\n")
    resolved = resolve_config(None, path, ["student.train.lr=0.01"], None)
    assert (resolved.data["baseline"]["train"]["lr"], resolved.data["student"]["train"]["lr"]) == (0.003, 0.01)


def test_default_output_folders_follow_one_rule(tmp_path):
    mine = tmp_path / "my-run.yaml"
    mine.write_text((experiments_dir() / "synth-tiny.yaml").read_text())
    by_profile = resolve_config("tiny", None, [], None)
    by_file = resolve_config(None, mine, [], "teacher")
    assert [default_out(what, by_profile) for what in ("teacher", "labels", "transfer-linear")] == [
        Path("runs/teacher-tiny"),
        Path("runs/labels-tiny"),
        Path("runs/transfer-linear-tiny"),
    ]
    assert default_out("labels", by_file) == Path("runs/labels-my-run")  # a --config file names its folders


def test_paper_demo_labels_with_the_demo_teacher():
    demo, paper = (read_yaml(experiments_dir() / f"synth-{name}.yaml") for name in ("demo", "paper-demo"))
    assert paper["teacher"] == demo["teacher"] and paper["synth"] == demo["synth"]
