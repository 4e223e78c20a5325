"""Tagging metrics against scikit-learn on random data."""

import numpy as np
import pytest
from scipy.stats import norm
import torch
from sklearn.metrics import average_precision_score, label_ranking_average_precision_score, roc_auc_score

from psl.metrics import average_precision, d_prime, lwlrap, roc_auc, single_label_metrics, tagging_metrics


@pytest.fixture
def data():
    rng = np.random.default_rng()
    truth = (rng.random((300, 12)) < 0.15).astype(float)
    truth[:, 3] = 0  # a class without positives
    truth[:5, 7] = 1  # a rare class
    scores = np.clip(truth * 0.3 + rng.random((300, 12)), 0, 1)
    scores[:, 5] = np.round(scores[:, 5], 1)  # many ties
    return truth, scores


def test_per_class_ap_and_auc_match_sklearn(data):
    truth, scores = data
    for c in range(truth.shape[1]):
        if truth[:, c].sum() == 0:
            assert np.isnan(average_precision(truth[:, c], scores[:, c]))
            continue
        assert average_precision(truth[:, c], scores[:, c]) == pytest.approx(
            average_precision_score(truth[:, c], scores[:, c])
        )
        assert roc_auc(truth[:, c], scores[:, c]) == pytest.approx(roc_auc_score(truth[:, c], scores[:, c]))


def test_macro_and_micro_means_skip_classes_without_positives(data):
    truth, scores = data
    m = tagging_metrics(truth, scores)
    has = truth.sum(axis=0) > 0
    assert m.mAP == pytest.approx(average_precision_score(truth[:, has], scores[:, has], average="macro"))
    assert m.auc == pytest.approx(roc_auc_score(truth[:, has], scores[:, has], average="macro"))
    assert m.micro_mAP == pytest.approx(average_precision_score(truth, scores, average="micro"))
    assert m.dprime == pytest.approx(np.sqrt(2) * norm.ppf(m.auc))
    assert np.isnan(m.per_class_ap[3]) and m.positives[3] == 0


def test_d_prime_reference_points():
    assert d_prime(0.5) == pytest.approx(0.0)
    assert d_prime(0.92135) == pytest.approx(np.sqrt(2) * 1.414, abs=1e-3)


def test_no_positive_at_all_is_an_error():
    with pytest.raises(ValueError, match="no class has a positive"):
        tagging_metrics(np.zeros((4, 2)), np.random.rand(4, 2))


def lwlrap_reference(truth, scores):
    """lwlrap by its definition, pair by pair, in float64."""
    total, pairs = 0.0, 0
    for t, s in zip(truth.astype(bool), scores.astype(np.float64)):
        for c in np.nonzero(t)[0]:
            at_least = s >= s[c]
            total += (at_least & t).sum() / at_least.sum()
            pairs += 1
    return total / pairs


def test_lwlrap_matches_its_definition_and_sklearn(rng):
    gen = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=rng)))
    truth = gen.random((80, 12)) < 0.15
    truth[:3] = False  # clips without labels do not count
    scores = gen.random((80, 12)).round(1)  # many ties
    assert lwlrap(truth, scores) == pytest.approx(lwlrap_reference(truth, scores), abs=1e-12)
    keep = truth.sum(1) > 0
    weighted = label_ranking_average_precision_score(truth[keep], scores[keep], sample_weight=truth[keep].sum(1))
    assert lwlrap(truth, scores) == pytest.approx(weighted, abs=1e-12)
    assert lwlrap(truth, truth.astype(float)) == 1.0


def test_accuracy_and_map_at_3(rng):
    gen = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=rng)))
    scores = gen.random((60, 7)).round(1)
    truth = gen.integers(0, 7, 60)
    expected_map3, expected_acc = [], []
    for y, s in zip(truth, scores):
        rank = 1 + sum(s[j] >= s[y] for j in range(7) if j != y)  # ties count against the truth
        expected_map3.append(1 / rank if rank <= 3 else 0)
        expected_acc.append(rank == 1)
    got = single_label_metrics(truth, scores)
    assert got["map3"] == pytest.approx(np.mean(expected_map3))
    assert got["accuracy"] == pytest.approx(np.mean(expected_acc))
