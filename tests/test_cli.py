"""The `psl` command: version, help and the benchmarks."""

import re

import pytest
from typer.testing import CliRunner

import psl
from psl.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"psl {psl.__version__}"


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "bench" in result.output


def test_bench_ops_prints_a_row_per_benchmark_with_a_ratio():
    result = runner.invoke(app, ["bench", "ops", "--batch", "2", "--seconds", "1", "--repeats", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if re.search(r"\d+\.\d\dx", line)]
    assert [row.split()[0] for row in rows] == ["log_mel", "log_mel", "chunk_pool"]
    assert "int16" in rows[1]


def test_bench_augment_prints_a_row_per_crop_with_a_ratio():
    result = runner.invoke(
        app, ["bench", "augment", "--batch", "2", "--seconds", "0.5", "--seconds", "2", "--repeats", "2"]
    )
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if re.search(r"\d+\.\d\dx", line)]
    assert [row.split()[3] for row in rows] == ["0.5", "2"]
    assert all("torchaudio" in row for row in rows)


def usage_error(result) -> str:
    """A usage error's message without the box Typer draws around it (and its line breaks)."""
    assert result.exit_code == 2, result.output
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


def test_bench_ops_refuses_an_unknown_device():
    result = runner.invoke(app, ["bench", "ops", "--device", "tpu"])
    assert "'tpu' is not one of 'cpu', 'cuda', 'auto'" in usage_error(result)


@pytest.mark.parametrize(
    "command, wrong, choices",
    [
        (["evaluate", "--model", "m.pt", "--amp"], "fp64", "'bf16', 'fp16', 'fp32'"),
        (["label", "--amp"], "fp64", "'bf16', 'fp16', 'fp32'"),
        (["bench", "student", "--amp"], "fp8", "'bf16', 'fp16', 'fp32'"),
        (["label", "--mode"], "frame", "'frames', 'isolated'"),
        (["transfer", "--model", "m.pt", "--mode"], "probe", "'linear', 'finetune'"),
    ],
)
def test_enumerated_options_list_their_choices_and_refuse_others(command, wrong, choices):
    option, path = command[-1], command[: next(i for i, word in enumerate(command) if word.startswith("-"))]
    shown = runner.invoke(app, [*path, "--help"], terminal_width=200).output
    assert f"{option} " in shown and "<" + choices.replace("'", "").replace(", ", "|") + ">" in shown
    message = usage_error(runner.invoke(app, [*command, wrong]))
    assert f"Invalid value for '{option}'" in message and f"'{wrong}' is not one of {choices}" in message


def test_an_unknown_precision_is_refused_not_taken_for_fp16():
    import torch

    from psl.config import ConfigError
    from psl.precision import Precision, autocast

    with pytest.raises(ConfigError, match=r"amp must be bf16, fp16 or fp32, got 'fp64'"):
        autocast(torch.device("cpu"), "fp64")
    with autocast(torch.device("cpu"), Precision.BF16):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_the_command_line_knows_the_transfer_modes_of_the_stage():
    from psl.cli import TransferMode
    from psl.stages.transfer import MODES

    assert tuple(TransferMode) == MODES


def test_data_synth_then_info(tmp_path):
    result = runner.invoke(
        app, ["data", "synth", "--profile", "tiny", "--out", str(tmp_path / "bench"), "--workers", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "balanced: 24 clips" in result.output
    info = runner.invoke(app, ["data", "info", str(tmp_path / "bench")])
    assert info.exit_code == 0, info.output
    lines = {line.split()[0]: line.split() for line in info.output.splitlines()[2:]}
    assert set(lines) == {"balanced", "eval", "full", "val", "fsd/train", "fsd/val", "fsd/eval"}
    assert lines["full"][1] == "96"


def test_data_synth_unknown_profile_lists_the_known_ones(tmp_path):
    result = runner.invoke(app, ["data", "synth", "--profile", "huge", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown profile 'huge'" in result.output and "tiny" in result.output


def test_ingest_with_a_wrong_layout_says_what_file_is_expected(tmp_path):
    result = runner.invoke(app, ["data", "fsd50k", "--root", str(tmp_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "vocabulary.csv" in result.output


def test_bench_data_reports_reads(tmp_path):
    result = runner.invoke(
        app, ["bench", "data", "--clips", "8", "--seconds", "1", "--budget", "0.1", "--workers", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "whole clips, 1 process" in result.output and "2-s crops, 1 process" in result.output


def test_bench_student_compares_the_label_sources():
    result = runner.invoke(
        app,
        [
            "bench",
            "student",
            "--clips",
            "4",
            "--chunk",
            "1",
            "--batch",
            "4",
            "--steps",
            "1",
            "--repeats",
            "1",
            "--width",
            "0.25",
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    for row in ("stored labels, grid", "stored labels, random crops", "online teacher", "psl label"):
        assert row in result.output


def test_bench_train_times_the_three_jobs_against_the_model_alone():
    args = ["--clips", "6", "--classes", "5", "--width", "0.25", "--batch", "3", "--steps", "1", "--repeats", "1"]
    result = runner.invoke(app, ["bench", "train", "--device", "cpu", "--workers", "1", *args])
    assert result.exit_code == 0, result.output
    rows = [
        (m["what"], float(m["psl"].replace(",", "")), float(m["baseline"].replace(",", "")), m["baseline_is"])
        for m in re.finditer(
            r"^(?P<what>.+?)\s+cpu\s+(?P<psl>\S+)\s+(?P<baseline>\S+)\s+\S+x\s+(?P<baseline_is>.+)$",
            result.output,
            re.M,
        )
    ]
    jobs = ["teacher train, 10-s clips", "student train, 2-s chunks + stored labels", "psl label, 10-s clips"]
    data_paths = ["  its loader alone, workers=1"] * 2 + ["  its host side alone, workers=1"]
    assert [row[0] for row in rows] == [row for pair in zip(jobs, data_paths) for row in pair]
    assert all(psl_rate > 0 and baseline_rate > 0 for _, psl_rate, baseline_rate, _ in rows)
    baselines = [row[3] for row in rows]
    assert baselines[:4] == ["model step alone (clips/s)"] * 2 + ["model step alone (chunks/s)"] * 2
    assert baselines[4:] == ["teacher forward alone (clips/s)"] * 2


def test_bench_train_refuses_an_unknown_device_or_amp():
    assert "'tpu' is not one of 'cpu', 'cuda', 'auto'" in usage_error(
        runner.invoke(app, ["bench", "train", "--device", "tpu"])
    )
    assert "'fp8' is not one of 'bf16', 'fp16', 'fp32'" in usage_error(
        runner.invoke(app, ["bench", "train", "--device", "cpu", "--amp", "fp8"])
    )


def test_an_expected_failure_is_one_line_and_exit_code_2_from_any_command(monkeypatch, tmp_path):
    import psl.data.info
    from psl.errors import DataError

    def fails(path):
        raise DataError(f"{path}: broken\nin two lines")

    monkeypatch.setattr(psl.data.info, "describe", fails)
    result = runner.invoke(app, ["data", "info", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path}: broken; in two lines\n" and result.stdout == ""


def test_any_other_exception_is_a_bug_and_keeps_its_traceback(monkeypatch, tmp_path):
    import psl.data.info

    def fails(path):
        raise ValueError("deep inside torch")

    monkeypatch.setattr(psl.data.info, "describe", fails)
    result = runner.invoke(app, ["data", "info", str(tmp_path)])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)
    assert "error:" not in result.stderr


def test_every_psl_error_is_one_type():
    from psl.config import ConfigError
    from psl.data.audio import AudioError
    from psl.data.ingest import IngestError
    from psl.errors import PslError
    from psl.labels import CorruptLabels, LabelMismatch
    from psl.locks import Busy
    from psl.models.release import ReleaseFormatError
    from psl.tagging import AudioError as TaggingAudioError
    from psl.tracking import TrackingError
    from psl.trainer import TrainingDiverged

    assert AudioError is TaggingAudioError
    for kind in (ConfigError, AudioError, IngestError, CorruptLabels, LabelMismatch, Busy, ReleaseFormatError):
        assert issubclass(kind, PslError)
    assert issubclass(TrackingError, PslError) and issubclass(TrainingDiverged, PslError)


def test_bench_metrics_checks_against_sklearn_and_prints_a_ratio():
    result = runner.invoke(app, ["bench", "metrics", "--clips", "300", "--classes", "20", "--repeats", "1"])
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.output.splitlines() if line.startswith("mAP + ROC-AUC")]
    ratio = row.split("scikit-learn")[0].split()[-1]
    assert "300 clips x 20 classes" in row and ratio.endswith("x") and float(ratio[:-1]) > 0
