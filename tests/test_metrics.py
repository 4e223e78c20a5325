"""Tagging metrics against scikit-learn on random data."""

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from psl.metrics import average_precision, d_prime, roc_auc, tagging_metrics


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
