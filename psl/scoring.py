"""Evaluation of a tagger on the full clips of a split: predictions, metrics, the per-class table.

`evaluate_split` scores a tagger the way the stages report it: clip metrics against the
split's labels (on the synthetic `eval` split, the complete truth), against the split's
weak labels where the store keeps them beside the truth (as AudioSet's eval is scored),
and, where the store has strong truth, as sound event detection (psl.sed) from the frame
probabilities of the same forward pass.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from psl.data.datasets import ClipDataset, pad_collate
from psl.data.store import ClipStore
from psl.data.synth import WEAK_LABELS_FILE
from psl.data.tables import read_rows
from psl.errors import DataError
from psl.metrics import TaggingMetrics, tagging_metrics
from psl.models.mobilenetv2 import TIME_STRIDE
from psl.precision import autocast


class _ByLength(Sampler[int]):
    """Clips in order of length, so a batch pads as little as possible."""

    def __init__(self, store: ClipStore) -> None:
        self.order = np.argsort(store.num_samples, kind="stable").tolist()

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def _outputs(model, store: ClipStore, batch_size: int, device, amp: str, workers: int):
    """(clip indices, TaggerOutput) per batch over every clip of `store`, whole, in eval mode."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = DataLoader(
        ClipDataset(store), batch_size=batch_size, sampler=_ByLength(store), collate_fn=pad_collate, num_workers=workers
    )
    try:
        for batch in loader:
            with autocast(device, amp):
                out = model(batch["wave"].to(device, non_blocking=True), batch["lengths"])
            yield batch["clip"].numpy(), out
    finally:
        model.train(was_training)


@torch.inference_mode()
def predict(
    model: torch.nn.Module,
    store: ClipStore,
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    amp: str = "bf16",
    workers: int = 0,
    output: str = "clip",
) -> np.ndarray:
    """One row per clip of `store`, each clip on its whole length: the clip probabilities
    [clips, classes], or with output="embedding" the clip embeddings [clips, features]."""
    rows = None
    for clips, out in _outputs(model, store, batch_size, device, amp, workers):
        values = getattr(out, output)
        if rows is None:
            rows = np.zeros((len(store), values.shape[1]), dtype=np.float32)
        rows[clips] = values.float().cpu().numpy()
    return rows


@torch.inference_mode()
def predict_frames(
    model: torch.nn.Module,
    store: ClipStore,
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    amp: str = "bf16",
    workers: int = 0,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The clip probabilities [clips, classes] (as `predict` gives them) and, from the same
    forward pass, each clip's frame probabilities [its valid output frames, classes]."""
    rows, frames = None, [None] * len(store)
    for clips, out in _outputs(model, store, batch_size, device, amp, workers):
        if rows is None:
            rows = np.zeros((len(store), out.clip.shape[1]), dtype=np.float32)
        rows[clips] = out.clip.float().cpu().numpy()
        probs = out.frames.float().cpu().numpy()
        for k, (clip, valid) in enumerate(zip(clips, out.valid_frames.cpu().tolist())):
            frames[clip] = probs[k, :valid]
    return rows, frames


def frame_seconds(model: torch.nn.Module) -> float:
    """Seconds per output frame of a tagger: 32 log-mel hops."""
    frontend = model.frontend
    return TIME_STRIDE * frontend.hop_length / frontend.sample_rate


def evaluate(model: torch.nn.Module, store: ClipStore, **options) -> tuple[TaggingMetrics, np.ndarray]:
    scores = predict(model, store, **options)
    return tagging_metrics(store.label_matrix(), scores), scores


def weak_label_matrix(store: ClipStore) -> np.ndarray | None:
    """[clips, classes] weak labels kept beside a split's complete labels (the synthetic
    `eval` split's weak_labels.csv), or None where the store has none."""
    path = store.path / WEAK_LABELS_FILE
    if not path.is_file():
        return None
    out = np.zeros((len(store), len(store.classes)), dtype=np.float32)
    rows = read_rows(path)
    if next(rows, (1, []))[1] != ["clip_id", "labels"]:
        raise DataError(f"{path}: expected the header clip_id,labels")
    seen = set()
    for line, row in rows:
        try:
            clip, labels = store.index_of(row[0]), [int(v) for v in row[1].split(";") if v]
        except (IndexError, KeyError, ValueError):
            raise DataError(f"{path}:{line}: expected a clip id of the store and integer labels, got {row}") from None
        if not all(0 <= v < len(store.classes) for v in labels):
            raise DataError(f"{path}:{line}: labels {row[1]!r} outside the {len(store.classes)} classes")
        out[clip, labels] = 1.0
        seen.add(clip)
    if len(seen) != len(store):
        raise DataError(f"{path}: labels for {len(seen)} of the {len(store)} clips of {store.path}")
    return out


@dataclass
class Evaluation:
    """A tagger on a split: see the module's docstring."""

    test: TaggingMetrics  # against the split's labels
    weak: TaggingMetrics | None  # against its weak labels, where the store keeps them
    sed: dict[str, float] | None  # event-level scores, where the store has strong truth
    scores: np.ndarray  # [clips, classes] clip probabilities
    frames: list[np.ndarray] | None  # per clip [frames, classes], where there is strong truth
    frame_seconds: float
    events: list | None = None  # the strong truth (psl.analysis.Event), where there is some
    weak_labels: np.ndarray | None = None  # [clips, classes], where the store keeps them

    def metrics(self) -> dict[str, float]:
        """Everything as MLflow metrics: test/..., test_weak/..., test/sed/..."""
        out = self.test.as_dict("test/")
        if self.weak is not None:
            out.update(self.weak.as_dict("test_weak/"))
        out.update({f"test/sed/{name}": value for name, value in (self.sed or {}).items()})
        return out


def evaluate_split(model: torch.nn.Module, store: ClipStore, **options) -> Evaluation:
    """Clip, weak-label and event-level scores of `model` on `store` in one forward pass."""
    from psl.analysis import strong_events
    from psl.sed import Events, FrameScores, sed_scores

    events = strong_events(store)
    weak = weak_label_matrix(store)
    step = frame_seconds(model)
    if events is None:
        scores, frames = predict(model, store, **options), None
    else:
        scores, frames = predict_frames(model, store, **options)
    test = tagging_metrics(store.label_matrix(), scores)
    weak_metrics = tagging_metrics(weak, scores) if weak is not None and weak.any() else None
    sed = None
    if events:
        durations = store.num_samples / store.sample_rate
        sed = sed_scores(FrameScores.from_clips(frames, durations, step), Events.from_records(events))
    return Evaluation(test, weak_metrics, sed, scores, frames, step, events, weak)


def per_class_table(metrics: TaggingMetrics, class_ids, class_names) -> str:
    """CSV text: index, id, name, positives, AP, AUC, sorted by AP (best first)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["index", "id", "name", "positives", "ap", "auc"])
    order = np.argsort(-np.nan_to_num(metrics.per_class_ap, nan=-1.0), kind="stable")
    for c in order:
        writer.writerow(
            [
                int(c),
                class_ids[c],
                class_names[c],
                int(metrics.positives[c]),
                f"{metrics.per_class_ap[c]:.6f}",
                f"{metrics.per_class_auc[c]:.6f}",
            ]
        )
    return out.getvalue()
