"""`psl transfer` on the tiny synthetic FSD-like set and on a constructed single-label set:
both modes, the metrics, the embedding cache, lineage."""

import mlflow
import numpy as np
import pytest
import torch

import psl.stages.transfer as transfer
from psl.checkpoints import model_snapshot
from psl.config import build
from psl.data.classes import ClassList
from psl.data.store import StoreWriter
from psl.metrics import tagging_metrics
from psl.models.tagger import AudioTagger, ModelConfig
from psl.stages.common import open_split, resolve_config
from psl.stages.transfer import TransferConfig, fit_linear_probe, run_transfer
from psl.tracking import experiment_id
from psl.trainer import save_atomic


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """An (untrained) tagger checkpoint on the tiny benchmark's six classes."""
    cfg = ModelConfig(width=0.25, n_mels=32)
    path = tmp_path_factory.mktemp("source") / "best.pt"
    snapshot = model_snapshot(cfg, list("abcdef"), list("ABCDEF"))
    save_atomic({"model": AudioTagger(6, cfg).state_dict(), "config": {**snapshot, "variant": "psl-1s"}}, path)
    return path


def tiny_config(*overrides: str) -> TransferConfig:
    resolved = resolve_config("tiny", None, list(overrides), "transfer")
    return build(TransferConfig, resolved.data["transfer"], "tiny: transfer")


def test_linear_probe_is_logged_and_reuses_cached_embeddings(source, tiny_root, tracking, tmp_path, monkeypatch):
    with mlflow.start_run(experiment_id=experiment_id()) as run:  # as a stage run logs it: lineage by run id
        mlflow.log_artifact(str(source), "checkpoints")
    cfg = tiny_config(f"cache={tmp_path / 'cache'}")
    result = run_transfer(run.info.run_id, tiny_root / "fsd", "linear", cfg, out=tmp_path / "out")
    logged = mlflow.get_run(result.run_id)
    assert logged.data.tags["psl.stage"] == "transfer" and logged.data.tags["psl.model_run_id"] == run.info.run_id
    assert logged.data.tags["psl.variant"] == "psl-1s" and logged.data.tags["psl.transfer_mode"] == "linear"
    for name in ("mAP", "micro_mAP", "lwlrap", "chosen_l2"):  # the tiny FSD-like set is multi-label
        assert f"transfer/fsd50k/linear/{name}" in logged.data.metrics
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3  # train, val, eval
    # A probe with other settings embeds nothing again.
    calls = []
    monkeypatch.setattr(transfer, "predict", lambda *a, **k: calls.append(1))
    again = run_transfer(
        str(source),
        tiny_root / "fsd",
        "linear",
        tiny_config(f"cache={tmp_path / 'cache'}", "l2_grid=[1.0]"),
        out=tmp_path / "o2",
    )
    assert calls == [] and set(again.metrics) == {"mAP", "micro_mAP", "lwlrap"}


def test_finetune_trains_a_new_head_and_logs_curves(source, tiny_root, tracking, tmp_path):
    result = run_transfer(str(source), tiny_root / "fsd", "finetune", tiny_config(), out=tmp_path / "ft")
    client = mlflow.MlflowClient()
    assert len(client.get_metric_history(result.run_id, "val/mAP")) == 2  # one validation per epoch
    assert 0 < result.metrics["mAP"] <= 1
    best = torch.load(tmp_path / "ft" / "best.pt", weights_only=True)
    fsd_classes = open_split(tiny_root / "fsd", "train").classes
    assert best["model"]["backbone.classifier.weight"].shape[0] == len(fsd_classes)
    # The backbone started from the source weights: the stem moved, but not far.
    start = torch.load(source, weights_only=True)["model"]
    stem = next(k for k in start if k.startswith("backbone.") and k.endswith("weight") and start[k].ndim == 4)
    assert best["model"][stem].shape == start[stem].shape
    assert torch.corrcoef(torch.stack([best["model"][stem].flatten(), start[stem].flatten()]))[0, 1] > 0.9


def single_label_root(root, rng: np.random.Generator):
    """A three-split store root where every clip has exactly one of three classes."""
    classes = ClassList(("x", "y", "z"), ("X", "Y", "Z"))
    for split, count in (("train", 24), ("val", 12), ("eval", 12)):
        writer = StoreWriter(root / split, classes)
        for i in range(count):
            samples = (rng.standard_normal(16000 * 2) * 3000).astype(np.int16)
            writer.append(f"{split}{i}", samples, [i % 3], source=f"{split}{i}.wav")
        writer.finish({"dataset": "kaggle-like"})
    return root


def test_single_label_data_gets_accuracy_and_map3(source, tracking, tmp_path):
    root = single_label_root(tmp_path / "data", np.random.default_rng(0))
    result = run_transfer(str(source), root, "linear", tiny_config(f"cache={tmp_path / 'c'}"), out=tmp_path / "o")
    assert set(result.metrics) == {"mAP", "accuracy", "map3"}
    assert "transfer/kaggle-like/linear/map3" in mlflow.get_run(result.run_id).data.metrics


def test_probe_separates_separable_embeddings(rng):
    """Where a feature decides each class, the probe is near perfect on new clips."""
    gen = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=rng)))

    class Split:
        def __init__(self, labels, classes):
            self.labels, self.classes = labels, classes

        def label_matrix(self):
            m = np.zeros((len(self.labels), self.classes), dtype=np.float32)
            for i, lab in enumerate(self.labels):
                m[i, lab] = 1
            return m

    cfg = TransferConfig(l2_grid=[1e-4, 1e-2], probe_steps=200)
    x = {s: gen.standard_normal((300, 8)) for s in ("train", "val", "eval")}
    multi = {s: Split([np.nonzero(v[i, :3] > 0)[0] for i in range(300)], 3) for s, v in x.items()}
    scores, _ = fit_linear_probe(x, multi, False, cfg)
    assert tagging_metrics(multi["eval"].label_matrix(), scores).mAP > 0.95
    single = {s: Split([[int(np.argmax(v[i, :4]))] for i in range(300)], 4) for s, v in x.items()}
    scores, _ = fit_linear_probe(x, single, True, cfg)
    assert (scores.argmax(1) == [lab[0] for lab in single["eval"].labels]).mean() >= 0.9
