"""Stage `teacher` on the tiny synthetic profile: the MLflow run it logs, that it learns, and
DDP with two CPU processes (exact resume after a kill: test_kill_resume.py)."""

import mlflow
import mlflow.pytorch
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from psl.checkpoints import load_checkpoint, load_tagger
from psl.cli import app
from psl.stages.common import resolve_config
from psl.stages.evaluate import run_evaluate
from psl.stages.weak import run_teacher
from runners import torchrun_psl

# Enough steps on the tiny profile to beat chance clearly, validating every 12 steps.
LEARN = ["train.epochs=10", "train.steps_per_epoch=12", "train.eval_every_steps=12", "tracking.log_model=true"]


def test_teacher_run_is_logged_and_learns(tiny_root, tracking, tmp_path):
    resolved = resolve_config("tiny", None, LEARN, "teacher")
    result = run_teacher(resolved, out=tmp_path / "teacher", data=tiny_root, progress=False)
    run = mlflow.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["psl.stage"] == "teacher" and run.data.tags["psl.variant"] == "teacher"
    assert run.data.tags["psl.dataset"] == "synth"
    assert run.data.params["train.epochs"] == "10" and run.data.params["model.width"] == "0.25"
    client = mlflow.MlflowClient()
    losses = client.get_metric_history(result.run_id, "train/loss")
    assert [m.step for m in losses] == list(range(1, 121))
    assert [m.step for m in client.get_metric_history(result.run_id, "val/mAP")] == list(range(12, 121, 12))
    for name in ("test/mAP", "test/auc", "test/dprime", "test/micro_mAP"):
        assert name in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"per_class_ap.csv", "per_class_ap.png", "checkpoints", "config"} <= artifacts
    logged = mlflow.pytorch.load_model(f"runs:/{result.run_id}/model")
    wave = torch.randn(1, 16000)
    torch.testing.assert_close(logged(wave).clip, load_tagger(result.best_checkpoint)[0](wave).clip)
    # Clearly better than chance: a random predictor's mAP is about the positive rate.
    truth = np.stack([np.eye(6)[lab].sum(0) for lab in _labels(tiny_root / "eval")])
    assert result.test.mAP > truth.mean() + 0.1, (result.test.mAP, truth.mean())
    model, config = load_tagger(result.best_checkpoint)
    assert config["class_ids"] == ["speech", "singing", "engine", "siren", "bird", "bell"]
    # `psl evaluate` on the same split, from the run id, reproduces the test metrics.
    evaluated = run_evaluate(result.run_id, tiny_root, "eval")
    assert evaluated.metrics.mAP == pytest.approx(result.test.mAP, abs=1e-6)
    assert mlflow.get_run(evaluated.run_id).data.tags["psl.model_run_id"] == result.run_id


def _labels(split):
    from psl.data.store import ClipStore

    return ClipStore(split).labels


def test_unreachable_tracking_server_fails_before_training(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    mlflow.set_tracking_uri("http://127.0.0.1:9")
    try:  # the command, in this process
        result = CliRunner().invoke(
            app, ["teacher", "--profile", "tiny", "--data", str(tiny_root), "--out", str(tmp_path / "t")]
        )
    finally:
        mlflow.set_tracking_uri(None)
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert "http://127.0.0.1:9 does not answer" in result.stderr
    assert not (tmp_path / "t").exists()


def test_bad_config_is_refused_before_training(tiny_root, tracking, tmp_path):
    # In this process (the command's own code; a process of its own costs seconds each).
    for override, message in (
        ("train.epoch=3", "unknown key 'epoch'"),
        ("train.lr=fast", "train.lr: expected float"),
        ("train.amp=fp8", "amp must be bf16, fp16 or fp32"),
    ):
        result = CliRunner().invoke(app, ["teacher", "--profile", "tiny", "--data", str(tiny_root), "--set", override])
        assert result.exit_code == 2 and message in result.stderr, (result.stderr, result.exception)
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


def test_ddp_with_two_cpu_processes(tiny_root, tracking, tmp_path):
    torchrun_psl(
        "teacher",
        "--profile",
        "tiny",
        "--data",
        str(tiny_root),
        "--out",
        str(tmp_path / "ddp"),
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=8",
        tracking_uri=tracking,
    )
    runs = mlflow.search_runs(experiment_names=["psl"])
    assert len(runs) == 1, "only rank 0 logs"
    # 96 clips drawn per epoch, 8 per process and step, 2 processes: 6 steps.
    assert load_checkpoint(tmp_path / "ddp" / "last.pt")["state"]["step"] == 6
    steps = mlflow.MlflowClient().get_metric_history(runs.run_id[0], "train/loss")
    assert len(steps) == 6


def test_early_stopping_and_mixup(tiny_root, tracking, tmp_path):
    """Patience 1 stops at the first validation that does not beat the best so far (with a
    learning rate this small only the normalisation statistics move); mixup runs through
    the same step."""
    overrides = ["train.epochs=8", "train.lr=1e-12", "train.early_stop_patience=1", "train.mixup=0.4"]
    result = run_teacher(
        resolve_config("tiny", None, overrides, "teacher"), out=tmp_path / "t", data=tiny_root, progress=False
    )
    state = load_checkpoint(tmp_path / "t" / "last.pt")["state"]
    values = [m.value for m in mlflow.MlflowClient().get_metric_history(result.run_id, "val/mAP")]
    assert state["stopped_early"] and state["epoch"] == len(values) < 8
    assert all(later > earlier for earlier, later in zip(values[:-1], values[1:-1])), "each earlier one improved"
    assert values[-1] <= max(values[:-1])


def test_mixup_mixes_waves_and_targets_alike():
    from psl.objectives import mixed
    from psl.trainer import TrainConfig, Trainer

    trainer = Trainer.__new__(Trainer)
    trainer.cfg = TrainConfig(mixup=0.5)
    wave = (torch.arange(12, dtype=torch.float32).reshape(3, 4) * 1000).to(torch.int16)
    batch = {"wave": wave, "lengths": torch.tensor([4, 2, 3])}
    lam = trainer._mix(batch)
    partner = batch["partner"]
    expected = lam[:, None] * wave.float() / 32768 + (1 - lam[:, None]) * wave.float()[partner] / 32768
    torch.testing.assert_close(batch["wave"], expected)
    assert (
        batch["lengths"].tolist() == torch.maximum(torch.tensor([4, 2, 3]), torch.tensor([4, 2, 3])[partner]).tolist()
    )
    target = torch.eye(3)
    torch.testing.assert_close(mixed(target, batch, lam), lam[:, None] * target + (1 - lam[:, None]) * target[partner])
