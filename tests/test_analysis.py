"""The missing-label analysis on the tiny benchmark's strong truth, with teachers whose
answers are known: a perfect one and a constant one."""

import numpy as np
import pytest

from psl.analysis import analyse, strong_events, true_tags
from psl.data.store import ClipStore

FRAME_S = 0.32


class ArrayLabels:
    """A label store held in memory: frames per clip id."""

    meta = {"mode": "frames"}
    frame_seconds = FRAME_S

    def __init__(self, frames: dict[str, np.ndarray]) -> None:
        self._frames = frames

    def frames(self, clip_id: str) -> np.ndarray:
        return self._frames[clip_id]


def teacher_frames(store: ClipStore, value) -> ArrayLabels:
    """value(clip index, frame start, frame end) -> [classes] frame probabilities."""
    out = {}
    for i, cid in enumerate(store.ids):
        count = int(np.ceil(store.duration(i) / FRAME_S))
        out[cid] = np.stack([value(i, t * FRAME_S, (t + 1) * FRAME_S) for t in range(count)]).astype(np.float16)
    return ArrayLabels(out)


def test_a_perfect_teacher_recovers_every_dropped_tag(tiny_root):
    store = ClipStore(tiny_root / "balanced")
    events = strong_events(store)
    classes = len(store.classes)

    def truth(i, start, end):
        row = np.zeros(classes)
        for e in events:
            if e.clip == i and e.onset < end and e.offset > start:
                row[e.label] = 1.0
        return row

    result = analyse(store, teacher_frames(store, truth))
    m = result.metrics
    weak = store.label_matrix().astype(bool)
    dropped = true_tags(events, weak.shape) & ~weak
    assert dropped.sum() > 0, "the tiny benchmark drops some true tags"
    assert m["dropped_tags"] == dropped.sum()
    assert m["dropped_tags_recovered"] == 1.0 and m["added_tags_precision"] == 1.0
    assert m["dropped_vs_absent_ap"] == 1.0
    assert m["weak_tags_kept"] == 1.0  # every weak tag is true, so the perfect teacher keeps it
    assert m["psl_tags_per_clip"] == pytest.approx(true_tags(events, weak.shape).sum(1).mean())
    for length in ("10s", "5s", "2s"):
        assert m[f"chunk_ap_{length}"] > 0.9  # frames straddling a chunk edge blur it a little
    assert set(result.figures) == {"tags_per_clip.png", "added_classes.png", "recovery.png"}


def test_a_constant_teacher_recovers_nothing(tiny_root):
    store = ClipStore(tiny_root / "balanced")
    events = strong_events(store)
    m = analyse(store, teacher_frames(store, lambda i, a, b: np.full(len(store.classes), 0.3)), plots=False).metrics
    weak = store.label_matrix().astype(bool)
    truth = true_tags(events, weak.shape)
    dropped, absent = truth & ~weak, ~truth
    assert m["dropped_tags_recovered"] == 0.0 and m["psl_tags_per_clip"] == 0.0
    assert m["clips_with_added_tags"] == 0.0 and m["weak_tags_kept"] == 0.0
    # All scores tie: AP is the share of dropped tags among the tags the weak labels lack.
    assert m["dropped_vs_absent_ap"] == pytest.approx(dropped.sum() / (dropped | absent).sum())


def test_psl_analyse_prints_the_analysis_and_writes_its_figures(tiny_root, tiny_labels, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from psl.cli import app
    from psl.labels import LabelStore

    monkeypatch.chdir(tmp_path)
    args = ["analyse", "--labels", str(tiny_labels), "--data", str(tiny_root), "--threshold", "0.3"]
    done = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "figures")])
    assert done.exit_code == 0, done.output
    store = ClipStore(tiny_root / "balanced")
    expected = analyse(store, LabelStore(tiny_labels / "balanced"), 0.3, plots=False).metrics
    printed = dict(line.split() for line in done.stdout.splitlines() if not line.startswith("figures"))
    assert printed == {name: f"{value:.4f}" for name, value in expected.items()}
    pngs = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert pngs == ["balanced-added_classes.png", "balanced-recovery.png", "balanced-tags_per_clip.png"]
    assert all((tmp_path / "figures" / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for name in pngs)
