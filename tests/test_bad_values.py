"""Non-finite and absurd values, and waits that must end: settings of nan or inf, a loss
that diverges, audio far beyond full scale, checkpoints that are not checkpoints or ask for
an absurd model, mistyped model paths, and tracking servers that are down or silent. Each
ends in one line naming the file, key or URI (exit code 2), within seconds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from psl.checkpoints import load_tagger, model_snapshot
from psl.cli import app
from psl.config import ConfigError
from psl.models.tagger import AudioTagger, ModelConfig
from psl.stages.common import build_section, resolve_config
from psl.stages.training_stage import TaggerStageConfig
from psl.trainer import TrainConfig, Trainer, TrainingDiverged, save_atomic

SMALL = ModelConfig(width=0.25, n_mels=32)


def psl(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, *parts: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for part in parts:
        assert part in result.stderr, result.stderr


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", ".inf", ".NaN", "1e400", "1" + "0" * 400])
def test_settings_that_are_not_finite_numbers_are_refused_with_the_key(text):
    resolved = resolve_config("tiny", None, [f"train.lr={text}"], "teacher")
    with pytest.raises(ConfigError, match=r"teacher\.train\.lr: .*(not a finite number|expected float)"):
        build_section(TaggerStageConfig, resolved, "teacher")


def test_psl_teacher_refuses_an_infinite_learning_rate_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(psl("teacher", "--profile", "tiny", "--set", "train.lr=inf"), "train.lr: 'inf' is not a finite")
    assert not list(tmp_path.iterdir()), "refused before any work: no data, runs or tracking store"


class Items(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        return dict(wave=torch.zeros(320, dtype=torch.int16), length=320, label=torch.zeros(2), clip=i, start=0)


class InOrder(torch.utils.data.Sampler):
    def __init__(self, *_) -> None:
        self.n = 4

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        pass


def test_a_diverging_loss_is_an_error_the_commands_report(tmp_path):
    """The trainer's divergence error is a ValueError, which every training command reports
    in one line (it was a bare FloatingPointError: a traceback)."""
    weight = torch.nn.Parameter(torch.ones(1))
    model = torch.nn.Module()
    model.weight = weight
    model.forward = lambda wave, lengths: weight * wave.float().sum()
    cfg = TrainConfig(epochs=1, batch_size=2, workers=0, amp="fp32")
    trainer = Trainer(
        model, Items(), InOrder, lambda out, batch, mix: out * float("nan"), None, cfg, tmp_path, progress=False
    )
    with pytest.raises(ValueError, match="training loss became nan at step 0; try a lower lr") as caught:
        trainer.fit()
    assert isinstance(caught.value, (TrainingDiverged, FloatingPointError))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "best.pt"
    torch.manual_seed(0)
    snapshot = model_snapshot(SMALL, ["a", "b", "c"], ["Alarm", "Bird", "Cello"])
    save_atomic({"model": AudioTagger(3, SMALL).state_dict(), "config": snapshot}, path)
    return path


def refuse_constants(name: str):
    raise AssertionError(f"{name} in the output: not JSON")


def test_audio_far_beyond_full_scale_is_clipped_and_the_json_stays_valid(tmp_path, checkpoint):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "huge.wav", (rng.standard_normal(32000) * 1e30).astype(np.float32), 16000, subtype="FLOAT")
    sf.write(tmp_path / "clipped.wav", np.sign(rng.standard_normal(32000)).astype(np.float32), 16000, subtype="FLOAT")
    done = psl("tag", tmp_path / "huge.wav", "--model", checkpoint, "--json", "--threshold", "0")
    assert done.exit_code == 0, done.stderr
    (report,) = json.loads(done.stdout, parse_constant=refuse_constants)["files"]
    scores = [t["score"] for t in report["tags"]]
    assert len(scores) == 3 and all(0 <= s <= 1 for s in scores)


def test_tag_reports_the_good_files_when_one_is_bad(tmp_path, checkpoint):
    rng = np.random.default_rng(1)
    for name in ("a.wav", "c.wav"):
        sf.write(tmp_path / name, 0.1 * rng.standard_normal(16000), 16000)
    (tmp_path / "b.wav").write_text("not audio")
    done = psl("tag", tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "c.wav", "--model", checkpoint, "--json")
    one_line_error(done, "b.wav: cannot read it as audio")
    a, b, c = json.loads(done.stdout)["files"]
    assert a["tags"] and c["tags"] and b == {"file": str(tmp_path / "b.wav"), "error": b["error"]}
    text = psl("tag", tmp_path / "b.wav", tmp_path / "a.wav", "--model", checkpoint)
    assert text.exit_code == 2 and f"{tmp_path / 'a.wav'}  (1.0 s)" in text.stdout


@pytest.mark.parametrize(
    "command", [["tag", "x.wav", "--model"], ["evaluate", "--profile", "tiny", "--model"], ["label", "--teacher"]]
)
def test_a_mistyped_model_path_is_a_missing_file_and_creates_no_tracking_store(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # MLflow's default: ./mlflow.db
    one_line_error(psl(*command, "runs/teacher/best.pt"), "runs/teacher/best.pt: no such checkpoint file")
    (tmp_path / "runs").mkdir()
    one_line_error(psl(*command, "runs"), "runs: a folder, not a checkpoint file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"], "no mlflow.db, no data generated"


def save_with(path: Path, config: dict, weights: dict) -> Path:
    save_atomic({"model": weights, "config": config}, path)
    return path


def test_checkpoints_that_are_text_absurd_or_broken_are_refused_before_building(tmp_path, checkpoint):
    text = tmp_path / "notes.pt"
    text.write_text("hello, not a checkpoint\n")
    with pytest.raises(ValueError, match=r"notes.pt: not a readable psl checkpoint"):
        load_tagger(text)
    weights = AudioTagger(3, SMALL).state_dict()
    snapshot = model_snapshot(SMALL, "abc", "ABC")
    huge = save_with(tmp_path / "huge.pt", {**snapshot, "model": {**snapshot["model"], "width": 1e6}}, weights)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"huge.pt: weights do not fit .* the config makes it \[32000000, 1, 3, 3\]"):
        load_tagger(huge)
    assert time.perf_counter() - start < 5, "checked on the meta device, nothing allocated"
    beyond = save_with(tmp_path / "beyond.pt", {**snapshot, "model": {**snapshot["model"], "width": 1e300}}, weights)
    with pytest.raises(ValueError, match=r"beyond.pt: its config describes a model that cannot be built"):
        load_tagger(beyond)
    nan = {k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v) for k, v in weights.items()}
    with pytest.raises(ValueError, match=r"nan.pt: weight .* holds NaN or Inf values"):
        load_tagger(save_with(tmp_path / "nan.pt", snapshot, nan))
    names = save_with(tmp_path / "names.pt", {**snapshot, "class_names": ["A"]}, weights)
    with pytest.raises(ValueError, match=r"names.pt: 3 class ids but 1 class names"):
        load_tagger(names)
    (tmp_path / "x.wav").write_bytes(b"")
    for bad, part in ((text, "notes.pt: not a readable"), (huge, "huge.pt: weights do not fit")):
        one_line_error(psl("tag", tmp_path / "x.wav", "--model", bad), part)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tag_against(uri: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, float]:
    """`psl tag` with the default registry model, tracking at `uri`; bounded by the test."""
    (tmp_path / "x.wav").write_bytes(b"")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PSL_TRACKING_TIMEOUT": "1"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "psl", "tag", str(tmp_path / "x.wav")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, time.perf_counter() - start


def test_tag_fails_in_seconds_when_the_tracking_server_is_down(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done, seconds = tag_against(uri, tmp_path)
    assert done.returncode == 2 and f"MLflow tracking server {uri} does not answer" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and seconds < 60


def test_tag_fails_in_seconds_against_a_server_that_accepts_but_never_answers(tmp_path):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the connections; nothing ever reads or answers
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        done, seconds = tag_against(uri, tmp_path)
    assert done.returncode == 2 and f"{uri} does not answer (no answer within 1 s)" in done.stderr, done.stderr
    assert seconds < 60


def test_the_health_check_timeout_is_short_and_checked(monkeypatch):
    from psl.tracking import TrackingError, health_timeout

    monkeypatch.delenv("PSL_TRACKING_TIMEOUT", raising=False)
    assert health_timeout() == 5
    monkeypatch.setenv("PSL_TRACKING_TIMEOUT", "nan")
    with pytest.raises(TrackingError, match="PSL_TRACKING_TIMEOUT must be a number of seconds"):
        health_timeout()
