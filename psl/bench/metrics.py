"""`psl bench metrics`: psl's tagging metrics (per-class AP and ROC-AUC, written with numpy)
against scikit-learn's on the same scores, at AudioSet's eval size by default: the measurement
behind keeping the hand-written version (it runs after every validation)."""

from __future__ import annotations

import numpy as np
import torch

from psl.bench.timing import Comparison, interleaved_medians
from psl.metrics import tagging_metrics


def _sklearn_metrics(truth: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    kept = truth.sum(axis=0) > 0  # sklearn refuses classes without positives; psl skips them
    return (
        float(np.mean(average_precision_score(truth[:, kept], scores[:, kept], average=None))),
        float(np.mean(roc_auc_score(truth[:, kept], scores[:, kept], average=None))),
    )


def bench_metrics(clips: int, classes: int, repeats: int, seed: int = 0) -> list[Comparison]:
    rng = np.random.default_rng(seed)
    truth = (rng.random((clips, classes)) < 2.4 / classes).astype(np.float64)  # AudioSet: ~2.4 tags a clip
    scores = np.clip(0.3 * truth + rng.random((clips, classes)), 0.0, 1.0).astype(np.float32)
    ours = tagging_metrics(truth, scores)
    theirs = _sklearn_metrics(truth, scores)
    if not np.allclose((ours.mAP, ours.auc), theirs, rtol=0, atol=1e-9):
        raise AssertionError(f"psl's mAP/AUC {ours.mAP, ours.auc} differ from scikit-learn's {theirs}")
    seconds = interleaved_medians(
        {"psl": lambda: tagging_metrics(truth, scores), "sklearn": lambda: _sklearn_metrics(truth, scores)},
        torch.device("cpu"),
        repeats,
        warmup=1,
    )
    what = f"mAP + ROC-AUC, {clips:,} clips x {classes} classes"
    return [Comparison(what, "cpu", "evaluations/s", 1 / seconds["psl"], "scikit-learn", 1 / seconds["sklearn"])]
