"""The missing-label analysis: what the pseudo labels say about the tags the weak labels lack.

A class is a pseudo tag of a clip when some frame (or, for isolated labels, some chunk) of
the teacher reaches the threshold; its pseudo score is that maximum. Without strong truth
(real AudioSet) the analysis compares pseudo and weak tags: how many per clip, how often
they agree, which classes the pseudo labels add. With strong truth (the synthetic
benchmark's strong.csv) it also measures, for the true tags the weak labels dropped, how
many the pseudo labels recover (overall, and by event duration and loudness), how well the
pseudo scores rank dropped tags above absent ones (AP), how precise the added tags are,
and, per chunk length (10, 5, 2 s grids, frame labels only), how well the chunk labels the
student trains on match the classes truly present in each chunk: their AP, the share of
chunks' true classes missing from the clip's weak label that the chunk label reaches the
threshold for (recovery), and the precision of the chunk tags the weak label lacks.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

import numpy as np

from psl.data.store import ClipStore
from psl.labels import LabelStore, span_targets
from psl.metrics import average_precision, tagging_metrics

THRESHOLD = 0.5
CHUNK_SECONDS = (10.0, 5.0, 2.0)


@dataclass(frozen=True)
class Event:
    clip: int  # index in the store
    onset: float
    offset: float
    label: int
    snr_db: float
    in_weak_label: bool


@dataclass
class Analysis:
    metrics: dict[str, float]  # without the labels/<split>/ prefix
    figures: dict[str, object] = field(default_factory=dict)  # file name -> matplotlib figure


def strong_events(store: ClipStore) -> list[Event] | None:
    """A split's strong truth (synthetic data's strong.csv), or None for real data."""
    path = store.path / "strong.csv"
    if not path.exists():
        return None
    with open(path, newline="") as f:
        return [
            Event(
                store.index_of(row["clip_id"]),
                float(row["onset"]),
                float(row["offset"]),
                int(row["class_index"]),
                float(row["snr_db"]),
                row["in_weak_label"] == "1",
            )
            for row in csv.DictReader(f)
        ]


def pseudo_scores(store: ClipStore, labels: LabelStore) -> np.ndarray:
    """[clips, classes]: each class's highest frame (or chunk) probability in the clip."""
    return np.stack([labels.frames(cid).max(axis=0) for cid in store.ids]).astype(np.float64)


def analyse(store: ClipStore, labels: LabelStore, threshold: float = THRESHOLD, plots: bool = True) -> Analysis:
    weak = store.label_matrix().astype(bool)
    scores = pseudo_scores(store, labels)
    pseudo = scores >= threshold
    added = pseudo & ~weak
    union = (pseudo | weak).sum(axis=1)
    metrics = {
        "weak_tags_per_clip": float(weak.sum(axis=1).mean()),
        "psl_tags_per_clip": float(pseudo.sum(axis=1).mean()),
        "clips_with_added_tags": float(added.any(axis=1).mean()),
        "weak_tags_kept": float((pseudo & weak).sum() / max(weak.sum(), 1)),
        "agreement": float(np.mean(np.where(union > 0, (pseudo & weak).sum(axis=1) / np.maximum(union, 1), 1.0))),
    }
    figures = {}
    if plots:
        figures["tags_per_clip.png"] = _tags_per_clip_figure(weak, pseudo)
        figures["added_classes.png"] = _added_classes_figure(added, store.classes.names)
    events = strong_events(store)
    if events is not None:
        metrics.update(_against_truth(store, labels, events, weak, scores, pseudo, threshold))
        if plots:
            figures["recovery.png"] = _recovery_figure(events, weak, pseudo)
    return Analysis(metrics, figures)


def true_tags(events: list[Event], shape: tuple[int, int]) -> np.ndarray:
    truth = np.zeros(shape, dtype=bool)
    for e in events:
        truth[e.clip, e.label] = True
    return truth


def _against_truth(store, labels, events, weak, scores, pseudo, threshold) -> dict[str, float]:
    truth = true_tags(events, weak.shape)
    dropped = truth & ~weak
    absent = ~truth
    added = pseudo & ~weak
    candidates = dropped | absent  # tags the weak label lacks: is the pseudo score higher where truly present?
    out = {
        "dropped_tags": float(dropped.sum()),
        "dropped_tags_recovered": float((dropped & pseudo).sum() / max(dropped.sum(), 1)),
        "added_tags_precision": float((added & truth).sum() / max(added.sum(), 1)),
    }
    if dropped.any():
        out["dropped_vs_absent_ap"] = average_precision(dropped[candidates].astype(float), scores[candidates])
    if labels.meta["mode"] == "frames":
        for length in CHUNK_SECONDS:
            out.update(_chunk_metrics(*_chunk_rows(store, labels, events, weak, length), threshold, f"{length:g}s"))
    return out


def _chunk_rows(store: ClipStore, labels: LabelStore, events: list[Event], weak: np.ndarray, length: float):
    """Over a non-overlapping chunk grid of every clip: [chunks, classes] the classes whose
    events overlap each chunk, the chunk's pseudo label, and its clip's weak label."""
    by_clip: dict[int, list[Event]] = {}
    for e in events:
        by_clip.setdefault(e.clip, []).append(e)
    truth, scores, weak_rows = [], [], []
    for i, cid in enumerate(store.ids):
        for start in np.arange(0.0, store.duration(i), length):
            row = np.zeros(len(store.classes), dtype=bool)
            for e in by_clip.get(i, []):
                row[e.label] |= e.onset < start + length and e.offset > start
            truth.append(row)
            scores.append(span_targets(labels, cid, float(start), length).numpy())
            weak_rows.append(weak[i])
    return np.array(truth, dtype=bool), np.array(scores, dtype=float), np.array(weak_rows, dtype=bool)


def _chunk_metrics(truth, scores, weak, threshold: float, suffix: str) -> dict[str, float]:
    """Chunk-level mAP of the pseudo labels; for the chunk's true classes that the weak label
    lacks, the share whose chunk label reaches the threshold and how well the chunk labels
    rank them above absent classes (AP: no threshold; a chunk label is a mean over the chunk,
    so a short event in a long chunk stays below the threshold); the precision of the chunk
    tags that the weak label lacks."""
    tagged = scores >= threshold
    dropped = truth & ~weak
    added = tagged & ~weak
    out = {
        f"chunk_ap_{suffix}": tagging_metrics(truth.astype(float), scores).mAP if truth.any() else float("nan"),
        f"chunk_dropped_recovered_{suffix}": float((dropped & tagged).sum() / max(dropped.sum(), 1)),
        f"chunk_added_precision_{suffix}": float((added & truth).sum() / max(added.sum(), 1)),
    }
    if dropped.any():
        lacking = ~weak
        out[f"chunk_dropped_vs_absent_ap_{suffix}"] = average_precision(dropped[lacking].astype(float), scores[lacking])
    return out


def _tags_per_clip_figure(weak: np.ndarray, pseudo: np.ndarray):
    from psl.plots import plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    top = int(max(weak.sum(1).max(), pseudo.sum(1).max())) + 1
    bins = np.arange(top + 1) - 0.5
    ax.hist([weak.sum(1), pseudo.sum(1)], bins=bins, label=["weak", "pseudo (>= threshold)"], color=["#999", "#3b75af"])
    ax.set_xlabel("tags per clip")
    ax.set_ylabel("clips")
    ax.legend()
    fig.tight_layout()
    return fig


def _added_classes_figure(added: np.ndarray, names, top: int = 15):
    from psl.plots import results_figure

    counts = added.sum(axis=0)
    order = np.argsort(-counts, kind="stable")[:top]
    return results_figure(
        [names[c] for c in order], [float(counts[c]) for c in order], "clips where PSL adds the class"
    )


def _recovery_figure(events: list[Event], weak: np.ndarray, pseudo: np.ndarray):
    """Share of dropped true events whose class the pseudo labels recover, by the event's
    duration and by its SNR."""
    from psl.plots import plt

    dropped = [e for e in events if not weak[e.clip, e.label]]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    if dropped:
        hit = np.array([pseudo[e.clip, e.label] for e in dropped], dtype=float)
        for ax, values, label in (
            (axes[0], np.array([e.offset - e.onset for e in dropped]), "event duration (s)"),
            (axes[1], np.array([e.snr_db for e in dropped]), "event SNR (dB)"),
        ):
            edges = np.unique(np.quantile(values, np.linspace(0, 1, 6)))
            which = np.clip(np.digitize(values, edges[1:-1]), 0, len(edges) - 2)
            centres = [(edges[b] + edges[b + 1]) / 2 for b in range(len(edges) - 1)]
            rates = [hit[which == b].mean() if (which == b).any() else np.nan for b in range(len(edges) - 1)]
            ax.plot(centres, rates, marker="o", color="#3b75af")
            ax.set_xlabel(label)
    axes[0].set_ylabel("dropped tags recovered")
    axes[0].set_ylim(0, 1)
    fig.suptitle(f"{len(dropped)} dropped true events")
    fig.tight_layout()
    return fig
