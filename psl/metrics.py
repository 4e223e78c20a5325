"""Tagging metrics: average precision and ROC-AUC per class, their macro means, d', micro mAP.

Written with numpy (sorting and cumulative sums, ties handled as scikit-learn does) so
they run on large evaluation sets without per-class Python overhead; the tests check
them against scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from psl.errors import DataError


def _tie_groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Descending order of scores and the last index of each run of equal scores."""
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    return order, last


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """sklearn.metrics.average_precision_score for one binary column (NaN without positives)."""
    positives = truth.sum()
    if positives == 0:
        return float("nan")
    order, last = _tie_groups(scores)
    tp = np.cumsum(truth[order])[last]
    precision = tp / (last + 1)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """sklearn.metrics.roc_auc_score for one binary column (NaN unless both classes occur)."""
    positives = truth.sum()
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order, last = _tie_groups(scores)
    tp = np.r_[0.0, np.cumsum(truth[order])[last]] / positives
    fp = np.r_[0.0, np.cumsum(1 - truth[order])[last]] / negatives
    return float(np.trapezoid(tp, fp))


def d_prime(auc: float) -> float:
    """d' = sqrt(2) * Phi^-1(AUC): the separation of two unit Gaussians with that AUC."""
    return float(np.sqrt(2.0) * ndtri(auc))


@dataclass
class TaggingMetrics:
    mAP: float  # macro mean over classes with at least one positive
    auc: float  # macro mean over classes with positives and negatives
    dprime: float  # d' of the macro AUC
    micro_mAP: float  # AP of all (clip, class) pairs pooled
    per_class_ap: np.ndarray  # NaN where a class has no positive
    per_class_auc: np.ndarray
    positives: np.ndarray  # per class

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {
            f"{prefix}mAP": self.mAP,
            f"{prefix}auc": self.auc,
            f"{prefix}dprime": self.dprime,
            f"{prefix}micro_mAP": self.micro_mAP,
        }


def tagging_metrics(truth: np.ndarray, scores: np.ndarray) -> TaggingMetrics:
    """truth: [clips, classes] 0/1; scores: [clips, classes] probabilities."""
    truth = np.asarray(truth, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if truth.shape != scores.shape or truth.ndim != 2:
        raise ValueError(f"truth and scores must both be [clips, classes], got {truth.shape} and {scores.shape}")
    ap = np.array([average_precision(truth[:, c], scores[:, c]) for c in range(truth.shape[1])])
    auc = np.array([roc_auc(truth[:, c], scores[:, c]) for c in range(truth.shape[1])])
    if np.isnan(ap).all():
        raise DataError("no class has a positive example: mAP is undefined")
    macro_auc = float(np.nanmean(auc)) if not np.isnan(auc).all() else float("nan")
    return TaggingMetrics(
        mAP=float(np.nanmean(ap)),
        auc=macro_auc,
        dprime=d_prime(macro_auc),
        micro_mAP=average_precision(truth.ravel(), scores.ravel()),
        per_class_ap=ap,
        per_class_auc=auc,
        positives=truth.sum(axis=0),
    )


def lwlrap(truth: np.ndarray, scores: np.ndarray) -> float:
    """Label-weighted label-ranking average precision (DCASE 2019 task 2, FSD50K): for every
    (clip, true class) pair, the share of true classes among the classes that the clip
    scores at least as high, averaged over all pairs. Clips without true classes do not
    count. Ties count against the class, as in sklearn's label-ranking AP."""
    truth = np.asarray(truth, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if truth.shape != scores.shape or truth.ndim != 2:
        raise ValueError(f"truth and scores must both be [clips, classes], got {truth.shape} and {scores.shape}")
    total, pairs = 0.0, 0
    for row_truth, row in zip(truth, scores):
        true_scores = row[row_truth]
        if true_scores.size == 0:
            continue
        # For each true class: how many classes, and how many true ones, score >= it.
        ranked = np.sort(row)
        ranked_true = np.sort(true_scores)
        at_least = len(row) - np.searchsorted(ranked, true_scores, side="left")
        true_at_least = len(true_scores) - np.searchsorted(ranked_true, true_scores, side="left")
        total += float(np.sum(true_at_least / at_least))
        pairs += len(true_scores)
    if pairs == 0:
        raise DataError("no clip has a true class: lwlrap is undefined")
    return total / pairs


def single_label_metrics(truth: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Accuracy and MAP@3 (FSDKaggle2018's metric: 1/rank of the true class when it is in the
    top 3, else 0) for one true class per clip. `truth` holds class indices."""
    truth = np.asarray(truth, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or truth.shape != (scores.shape[0],):
        raise ValueError(f"need class indices [clips] and scores [clips, classes], got {truth.shape}, {scores.shape}")
    # Rank of the true class, ties counting against it: 1 + classes scored strictly higher
    # + other classes scored equally.
    own = scores[np.arange(len(truth)), truth][:, None]
    rank = (scores > own).sum(axis=1) + (scores == own).sum(axis=1)
    return {
        "accuracy": float(np.mean(rank == 1)),
        "map3": float(np.mean(np.where(rank <= 3, 1.0 / rank, 0.0))),
    }
