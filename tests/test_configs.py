"""Every shipped experiment file builds into its stages' typed configs; bad keys are named."""

import pytest

from psl.config import ConfigError, build, experiments_dir, read_yaml
from psl.data.synth.config import SynthConfig
from psl.stages.pipeline import PipelineConfig
from psl.stages.transfer import TransferConfig
from psl.stages.student import StudentConfig
from psl.stages.training import TaggerStageConfig

SECTIONS = {
    "synth": SynthConfig,
    "teacher": TaggerStageConfig,
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
