"""Scoring against complete and weak labels: the synthetic eval split's weak labels, the two
clip scores and the event-level scores a stage logs, and the missing-label analysis of
chunk labels per chunk length."""

import shutil

import mlflow
import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from psl.analysis import analyse, strong_events
from psl.config import profile_path
from psl.data.store import ClipStore
from psl.data.synth.config import load_synth_config
from psl.data.synth.generate import ALL_CLASSES, WEAK_LABELS_FILE, plan_split
from psl.scoring import evaluate_split, predict, weak_label_matrix
from psl.models.tagger import AudioTagger, ModelConfig

STEP = 0.32


def sklearn_map(truth: np.ndarray, scores: np.ndarray) -> float:
    """Macro AP over the classes with a positive, with scikit-learn."""
    keep = truth.sum(axis=0) > 0
    return float(np.mean([average_precision_score(truth[:, c], scores[:, c]) for c in np.flatnonzero(keep)]))


@pytest.fixture(scope="module")
def tagger():
    torch.manual_seed(0)
    return AudioTagger(6, ModelConfig(width=0.25, n_mels=32)).eval()


def test_eval_split_keeps_weak_labels_beside_the_truth(tiny_root):
    store = ClipStore(tiny_root / "eval")
    truth, weak = store.label_matrix(), weak_label_matrix(store)
    assert weak is not None and weak.shape == truth.shape
    assert (weak <= truth).all(), "weak labels only drop true tags"
    assert (weak.sum(axis=1) >= 1).all(), "every clip keeps a tag"
    assert (weak < truth).any(), "the tiny eval split drops some tags"
    # They are the plan's: the missing-label model on the clip's own stream.
    cfg = load_synth_config(profile_path("tiny"))
    index = {cid: i for i, cid in enumerate(store.classes.ids)}
    for plan in plan_split(cfg, "eval", len(store)):
        expected = sorted(index[ALL_CLASSES[c][0]] for c in plan.eval_weak)
        assert np.flatnonzero(weak[store.index_of(plan.clip_id)]).tolist() == expected
    # Weakly labelled splits keep no second label set.
    assert weak_label_matrix(ClipStore(tiny_root / "val")) is None


def test_weak_and_truth_scores_match_sklearn(tiny_root, tagger):
    store = ClipStore(tiny_root / "eval")
    evaluation = evaluate_split(tagger, store, batch_size=8)
    truth, weak = store.label_matrix(), weak_label_matrix(store)
    # The same forward pass gives the clip scores that `predict` gives.
    assert np.array_equal(evaluation.scores, predict(tagger, store, batch_size=8))
    assert evaluation.weak.mAP == pytest.approx(sklearn_map(weak, evaluation.scores), abs=1e-12)
    assert evaluation.test.mAP == pytest.approx(sklearn_map(truth, evaluation.scores), abs=1e-12)
    assert evaluation.weak.mAP != pytest.approx(evaluation.test.mAP, abs=1e-6)
    metrics = evaluation.metrics()
    assert metrics["test_weak/mAP"] == evaluation.weak.mAP and metrics["test/mAP"] == evaluation.test.mAP
    for name in ("psds1", "psds2", "segment_f1_micro", "segment_f1_macro"):
        assert 0.0 <= metrics[f"test/sed/{name}"] <= 1.0
    assert len(evaluation.frames) == len(store)
    for i, f in enumerate(evaluation.frames):  # the valid frames cover the clip, and no more
        assert f.shape[1] == 6 and (len(f) - 1) * STEP < store.duration(i) <= len(f) * STEP


def test_stores_without_weak_labels_or_strong_truth_score_what_they_can(tiny_root, tagger, tmp_path):
    older = tmp_path / "eval"
    shutil.copytree(tiny_root / "eval", older)
    (older / WEAK_LABELS_FILE).unlink()
    evaluation = evaluate_split(tagger, ClipStore(older), batch_size=8)
    assert evaluation.weak is None and "test_weak/mAP" not in evaluation.metrics()
    assert evaluation.sed is not None
    (older / "strong.csv").unlink()
    evaluation = evaluate_split(tagger, ClipStore(older), batch_size=8)
    assert evaluation.sed is None and evaluation.frames is None
    assert set(evaluation.metrics()) == {"test/mAP", "test/auc", "test/dprime", "test/micro_mAP"}


def test_a_stage_run_logs_both_scores_and_the_event_scores(tiny_root, tracking, tmp_path):
    from psl.stages.common import resolve_config
    from psl.stages.evaluate import run_evaluate
    from psl.stages.weak import run_teacher

    resolved = resolve_config("tiny", None, ["train.epochs=1", "train.steps_per_epoch=2"], "teacher")
    result = run_teacher(resolved, out=tmp_path / "teacher", data=tiny_root, progress=False)
    logged = mlflow.get_run(result.run_id).data.metrics
    for name in ("test/mAP", "test_weak/mAP", "test_weak/auc", "test_weak/dprime", "test/sed/psds1", "test/sed/psds2"):
        assert name in logged, name
    assert "test/sed/segment_f1_micro" in logged and "test/sed/segment_f1_macro" in logged
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id)}
    assert "sed_examples.png" in artifacts
    again = mlflow.get_run(run_evaluate(result.run_id, tiny_root, "eval").run_id).data.metrics
    for name in ("test_weak/mAP", "test/sed/psds1", "test/sed/segment_f1_micro"):
        assert again[name] == pytest.approx(logged[name], abs=1e-9), name


class FrameLabels:
    """A frame label store held in memory."""

    meta = {"mode": "frames"}
    frame_seconds = STEP

    def __init__(self, frames: dict[str, np.ndarray]) -> None:
        self._frames = frames

    def frames(self, clip_id: str) -> np.ndarray:
        return self._frames[clip_id]


def teacher_labels(store: ClipStore, value) -> FrameLabels:
    """value(clip, frame start, frame end) -> [classes]."""
    out = {}
    for i, cid in enumerate(store.ids):
        count = int(np.ceil(store.duration(i) / STEP))
        out[cid] = np.stack([value(i, t * STEP, (t + 1) * STEP) for t in range(count)]).astype(np.float16)
    return FrameLabels(out)


def test_chunk_labels_are_scored_per_chunk_length(tiny_root):
    """A perfect teacher's chunk tags the weak label lacks are all true and its chunk labels
    rank the dropped classes above the absent ones; finer chunks bring more dropped tags over
    the threshold (a short event is a small part of a long chunk's mean; tiny clips are 4 s,
    so 10- and 5-s chunks are whole clips). A constant teacher below the threshold recovers
    and adds nothing."""
    store = ClipStore(tiny_root / "balanced")
    events = strong_events(store)

    def truth(i, start, end):
        row = np.zeros(len(store.classes))
        for e in events:
            row[e.label] = max(row[e.label], float(e.clip == i and e.onset < end and e.offset > start))
        return row

    m = analyse(store, teacher_labels(store, truth), plots=False).metrics
    for length in ("10s", "5s", "2s"):
        assert m[f"chunk_added_precision_{length}"] > 0.9  # frames straddling a chunk edge blur it
        assert m[f"chunk_dropped_vs_absent_ap_{length}"] > 0.9
        assert 0.0 < m[f"chunk_dropped_recovered_{length}"] <= 1.0
    assert m["chunk_dropped_recovered_2s"] > m["chunk_dropped_recovered_5s"] == m["chunk_dropped_recovered_10s"]
    flat = analyse(store, teacher_labels(store, lambda i, a, b: np.full(len(store.classes), 0.3)), plots=False)
    for length in ("10s", "5s", "2s"):
        assert flat.metrics[f"chunk_dropped_recovered_{length}"] == 0.0
        assert flat.metrics[f"chunk_added_precision_{length}"] == 0.0
