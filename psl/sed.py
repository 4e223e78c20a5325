"""Sound event detection scores of frame probabilities against strong (onset/offset) truth.

A tagger with a decision-level head gives a probability per class and output frame; frame t
of a clip is centred on t * frame_seconds and covers half a frame either side, clipped to
the clip (`psl.labels.frame_spans`). Two
families of scores, both on the raw frames (no median filter or other post-processing):

- Segment-based F1 (Mesaros et al. 2016; segment activity as sed_eval marks it): the clip
  is cut into segments of `resolution` seconds; a class is active in a segment for the
  truth when one of its events overlaps it, for the system when a frame at or above
  `threshold` does. Micro F1 pools the segment counts of all classes; macro F1 averages
  the per-class F1 over the classes active somewhere in the truth (sed_eval also averages
  in the absent classes, as zeros).
- PSDS (Bilen et al. 2020, the polyphonic sound detection score of DCASE task 4), with
  psds_eval's definitions: at each threshold, runs of active frames are detections; a
  detection is accepted when at least `dtc` of it lies on truth of its class (else it is a
  false positive), a true event is detected when accepted detections cover at least `gtc`
  of it; with `alpha_ct` > 0, rejected detections lying `cttc` or more on another class's
  truth are cross-triggers. Per class: TPR against effective FP rate per hour, a step
  ROC over the operating points; PSDS is the area under mean TPR - alpha_st * std over
  classes, up to `max_efpr`, divided by `max_efpr`. Same-class truth events that overlap
  are merged first (psds_eval refuses them). Classes without truth events do not count.

Everything works on the frame grid (detection edges are frame edges), so an evaluation is
a few array operations per threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from psl.labels import frame_spans

SECONDS_PER_HOUR = 3600.0
# DCASE task 4 evaluates PSDS at 50 thresholds: 0.01, 0.03, ..., 0.99.
DCASE_THRESHOLDS = tuple(float(t) for t in np.arange(0.01, 1.0, 0.02).round(2))


@dataclass(frozen=True)
class PsdsSettings:
    dtc: float  # detection tolerance criterion
    gtc: float  # ground truth intersection criterion
    cttc: float | None  # cross-trigger tolerance criterion (None: no cross-triggers)
    alpha_ct: float  # weight of cross-triggers in the effective FP rate
    alpha_st: float  # weight of the spread of TPR over classes
    max_efpr: float = 100.0  # per hour

    def __post_init__(self) -> None:
        if not (0 <= self.dtc <= 1 and 0 <= self.gtc <= 1 and 0 <= self.alpha_ct <= 1 and self.alpha_st >= 0):
            raise ValueError(f"need dtc, gtc, alpha_ct in [0, 1] and alpha_st >= 0, got {self}")
        if self.alpha_ct > 0 and self.cttc is None:
            raise ValueError("cross-triggers (alpha_ct > 0) need a cttc")
        if self.max_efpr <= 0:
            raise ValueError(f"max_efpr must be positive, got {self.max_efpr}")


# DCASE 2021-2023 task 4: scenario 1 asks for precise on/offsets, scenario 2 for the right
# classes without confusing them.
SCENARIO_1 = PsdsSettings(dtc=0.7, gtc=0.7, cttc=None, alpha_ct=0.0, alpha_st=1.0)
SCENARIO_2 = PsdsSettings(dtc=0.1, gtc=0.1, cttc=0.3, alpha_ct=0.5, alpha_st=1.0)


@dataclass(frozen=True)
class Events:
    """Strong truth as parallel arrays, one entry per event."""

    clip: np.ndarray  # index of the clip
    label: np.ndarray  # class index
    onset: np.ndarray  # seconds
    offset: np.ndarray

    @classmethod
    def from_records(cls, events) -> Events:
        """From objects with .clip, .label, .onset and .offset (psl.analysis.Event)."""
        events = list(events)
        return cls(
            np.array([e.clip for e in events], dtype=np.int64),
            np.array([e.label for e in events], dtype=np.int64),
            np.array([e.onset for e in events], dtype=np.float64),
            np.array([e.offset for e in events], dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.clip)


@dataclass(frozen=True)
class FrameScores:
    """Frame probabilities of a set of clips, padded to one array."""

    probs: np.ndarray  # [clips, frames, classes]
    frame_len: np.ndarray  # [clips, frames] seconds of each frame inside its clip (0: padding)
    frame_seconds: float
    frame_start: np.ndarray  # [frames] where each frame starts in its clip, seconds
    durations: np.ndarray  # [clips] seconds

    @classmethod
    def from_clips(cls, frames: list[np.ndarray], durations, frame_seconds: float) -> FrameScores:
        """`frames[i]` [frames_i, classes] for clip i of `durations[i]` seconds."""
        durations = np.asarray(durations, dtype=np.float64)
        if len(frames) != len(durations) or not frames:
            raise ValueError(f"need one frame array per clip, got {len(frames)} for {len(durations)} clips")
        count = max(len(f) for f in frames)
        probs = np.zeros((len(frames), count, frames[0].shape[1]), dtype=np.float32)
        for i, f in enumerate(frames):
            probs[i, : len(f)] = f
        starts, ends = frame_spans(count, frame_seconds)
        inside = np.minimum(ends, durations[:, None]) - starts
        lengths = np.array([len(f) for f in frames])
        frame_len = np.where(np.arange(count) < lengths[:, None], np.clip(inside, 0.0, None), 0.0)
        return cls(probs, frame_len, float(frame_seconds), starts, durations)

    @property
    def num_classes(self) -> int:
        return self.probs.shape[2]

    def active(self, threshold: float) -> np.ndarray:
        """[clips, frames, classes]: frames inside their clip scoring at least `threshold`."""
        return (self.probs >= threshold) & (self.frame_len > 0)[:, :, None]


def merge_overlapping(events: Events, durations) -> Events:
    """Events clipped to their clip, with overlapping events of one class in one clip joined."""
    durations = np.asarray(durations, dtype=np.float64)
    onset = np.clip(events.onset, 0.0, durations[events.clip])
    offset = np.clip(events.offset, 0.0, durations[events.clip])
    keep = offset > onset
    order = np.lexsort((onset[keep], events.label[keep], events.clip[keep]))
    clip, label = events.clip[keep][order], events.label[keep][order]
    onset, offset = onset[keep][order], offset[keep][order]
    merged: list[list] = []
    for c, k, a, b in zip(clip, label, onset, offset):
        last = merged[-1] if merged else None
        if last is not None and last[0] == c and last[1] == k and a < last[3]:
            last[3] = max(last[3], b)
        else:
            merged.append([c, k, a, b])
    rows = np.array(merged, dtype=np.float64).reshape(-1, 4)
    return Events(rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64), rows[:, 2], rows[:, 3])


def event_frame_overlap(events: Events, scores: FrameScores) -> np.ndarray:
    """[events, frames]: seconds of each frame of the event's clip that the event covers."""
    starts = scores.frame_start
    ends = starts + scores.frame_len[events.clip]
    overlap = np.minimum(events.offset[:, None], ends) - np.maximum(events.onset[:, None], starts)
    return np.clip(overlap, 0.0, None)


def truth_coverage(events: Events, overlap: np.ndarray, scores: FrameScores) -> np.ndarray:
    """[clips, frames, classes]: seconds of each frame covered by truth of each class
    (events merged per class, so overlaps are not counted twice)."""
    cover = np.zeros(scores.probs.shape, dtype=np.float64)
    np.add.at(cover, (events.clip, slice(None), events.label), overlap)
    return cover


def segment_f1(
    scores: FrameScores, events: Events, threshold: float = 0.5, resolution: float = 1.0
) -> dict[str, float]:
    """Segment-based F1 (micro and macro) and the micro precision and recall."""
    frames = scores.probs.shape[1]
    segments = max(1, math.ceil(float(scores.durations.max()) / resolution - 1e-9))
    starts, ends = frame_spans(frames, scores.frame_seconds)
    seg_start = np.arange(segments) * resolution
    # Frame t touches segment s when their spans overlap with positive length.
    touches = (starts[:, None] < seg_start + resolution) & (ends[:, None] > seg_start)
    system = np.einsum("nfc,fs->nsc", scores.active(threshold).astype(np.float32), touches.astype(np.float32)) > 0
    truth = np.zeros_like(system)
    first = np.floor(events.onset / resolution).astype(np.int64)
    last = np.ceil(events.offset / resolution - 1e-9).astype(np.int64)
    for n, k, a, b in zip(events.clip, events.label, first, last):
        truth[n, a : max(b, a + 1), k] = True
    in_clip = seg_start[None, :] < scores.durations[:, None]
    system &= in_clip[:, :, None]
    tp = (system & truth).sum(axis=(0, 1))
    fp = (system & ~truth).sum(axis=(0, 1))
    fn = (~system & truth).sum(axis=(0, 1))
    present = (tp + fn) > 0
    per_class = 2 * tp[present] / np.maximum(2 * tp[present] + fp[present] + fn[present], 1)
    return {
        "segment_f1_micro": _f1(tp.sum(), fp.sum(), fn.sum()),
        "segment_f1_macro": float(per_class.mean()) if present.any() else float("nan"),
        "segment_precision_micro": float(tp.sum() / max(tp.sum() + fp.sum(), 1)),
        "segment_recall_micro": float(tp.sum() / max(tp.sum() + fn.sum(), 1)),
    }


def _f1(tp: int, fp: int, fn: int) -> float:
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else float("nan")


@dataclass
class _Grid:
    """One PSDS evaluation's scores and truth, laid out flat as [classes, clips, frames + 1]:
    the extra frame never detects, so a run of active frames never crosses a row."""

    probs: np.ndarray  # -inf where there is no frame
    length: np.ndarray  # seconds of each frame
    own: np.ndarray  # seconds of each frame covered by truth of the row's class
    prefix: np.ndarray  # [clips, frames + 1, classes] truth seconds before each frame
    rows: tuple[int, int, int]  # classes, clips, frames + 1
    events: Events  # merged, classes numbered as the rows
    overlap: np.ndarray  # [events, frames] seconds
    counts: np.ndarray  # [classes] events
    seconds: np.ndarray  # [classes] total event time
    total_seconds: float  # of all clips


def _grid(scores: FrameScores, events: Events) -> _Grid:
    """The grid of the classes that have events (the only ones PSDS counts)."""
    merged = merge_overlapping(events, scores.durations)
    classes = np.unique(merged.label)
    events = Events(merged.clip, np.searchsorted(classes, merged.label), merged.onset, merged.offset)
    scores = FrameScores(
        scores.probs[:, :, classes], scores.frame_len, scores.frame_seconds, scores.frame_start, scores.durations
    )
    overlap = event_frame_overlap(events, scores)
    cover = truth_coverage(events, overlap, scores)
    clips, frames, count = cover.shape

    def rows(values: np.ndarray, fill: float) -> np.ndarray:  # [clips, frames, classes] -> flat rows
        out = np.full((count, clips, frames + 1), fill)
        out[:, :, :frames] = np.moveaxis(values, 2, 0)
        return out.ravel()

    probs = np.where(scores.frame_len[:, :, None] > 0, scores.probs.astype(np.float64), -np.inf)
    prefix = np.zeros((clips, frames + 1, count))
    np.cumsum(cover, axis=1, out=prefix[:, 1:])
    return _Grid(
        rows(probs, -np.inf),
        rows(np.broadcast_to(scores.frame_len[:, :, None], cover.shape), 0.0),
        rows(cover, 0.0),
        prefix,
        (count, clips, frames + 1),
        events,
        overlap,
        np.bincount(events.label, minlength=count),
        np.bincount(events.label, weights=events.offset - events.onset, minlength=count),
        float(scores.durations.sum()),
    )


def _operating_point(grid: _Grid, threshold: float, settings: PsdsSettings) -> tuple[np.ndarray, np.ndarray]:
    """Per class at one threshold: the TP ratio and the effective FP rate per hour."""
    classes, clips, width = grid.rows
    active = grid.probs >= threshold
    first = active & ~np.r_[False, active[:-1]]
    positions = np.flatnonzero(active)
    run = np.cumsum(first)[positions] - 1  # runs numbered in flat order
    starts = np.flatnonzero(first)
    length = np.bincount(run, grid.length[positions], minlength=len(starts))
    own = np.bincount(run, grid.own[positions], minlength=len(starts))
    accepted = own >= settings.dtc * length  # the detection tolerance criterion
    run_class = starts // (clips * width)
    fpr = np.bincount(run_class[~accepted], minlength=classes) * SECONDS_PER_HOUR / grid.total_seconds
    # Ground truth coverage by the accepted detections of its class.
    kept = np.zeros(active.shape, dtype=bool)
    kept[positions] = accepted[run]
    kept = kept.reshape(grid.rows)[:, :, :-1]
    e = grid.events
    hit = (grid.overlap * kept[e.label, e.clip]).sum(axis=1) >= settings.gtc * (e.offset - e.onset)
    tpr = np.bincount(e.label[hit], minlength=classes) / grid.counts
    if not settings.alpha_ct:
        return tpr, fpr
    rejected = ~accepted
    ends = np.flatnonzero(active & ~np.r_[active[1:], False])[rejected] + 1
    ctr = _cross_trigger_rate(grid, starts[rejected], ends, length[rejected], run_class[rejected], settings)
    return tpr, fpr + settings.alpha_ct * ctr


def _cross_trigger_rate(grid: _Grid, starts, ends, length, run_class, settings: PsdsSettings) -> np.ndarray:
    """Per class c: the mean over the other classes k of the rate (per hour of k's truth) of
    rejected detections of c that lie at least `cttc` on truth of k."""
    classes, clips, width = grid.rows
    clip, first = np.divmod(starts % (clips * width), width)
    last = (ends - 1) % width + 1
    on_truth = grid.prefix[clip, last] - grid.prefix[clip, first]  # [detections, classes] seconds
    crossed = on_truth >= settings.cttc * length[:, None]
    crossed[np.arange(len(run_class)), run_class] = False
    det, other = np.nonzero(crossed)
    counts = np.bincount(run_class[det] * classes + other, minlength=classes * classes).reshape(classes, classes)
    rate = counts * SECONDS_PER_HOUR / grid.seconds[None, :]
    np.fill_diagonal(rate, np.nan)
    return np.nanmean(rate, axis=1) if classes > 1 else np.zeros(classes)


def psds(
    scores: FrameScores,
    events: Events,
    settings: PsdsSettings = SCENARIO_1,
    thresholds=DCASE_THRESHOLDS,
) -> float:
    """The polyphonic sound detection score over the given operating points (see above)."""
    if len(events) == 0:
        return float("nan")
    grid = _grid(scores, events)
    points = [_operating_point(grid, float(t), settings) for t in thresholds]
    nothing = np.zeros(len(grid.counts))  # the operating point that detects nothing
    tpr = np.stack([p[0] for p in points] + [nothing], axis=1)
    efpr = np.stack([p[1] for p in points] + [nothing], axis=1)
    return _area_under_psd_roc(tpr, efpr, settings)


def _area_under_psd_roc(tpr: np.ndarray, efpr: np.ndarray, settings: PsdsSettings) -> float:
    """tpr, efpr: [classes, operating points]. Each class's ROC is a step function: at x, the
    best TPR of its operating points with eFPR <= x. The summary curve (mean - alpha_st *
    std over classes, floored at 0) is integrated as rectangles up to max_efpr."""
    axis = np.unique(efpr)
    curves = np.empty((len(tpr), len(axis)))
    for c in range(len(tpr)):
        order = np.argsort(efpr[c], kind="stable")
        best = np.maximum.accumulate(tpr[c][order])
        at = np.searchsorted(efpr[c][order], axis, side="right") - 1
        curves[c] = np.where(at >= 0, best[np.clip(at, 0, None)], 0.0)
    summary = np.clip(curves.mean(axis=0) - settings.alpha_st * curves.std(axis=0), 0.0, None)
    edges = np.r_[axis[axis < settings.max_efpr], settings.max_efpr]
    return float(np.sum(np.diff(edges) * summary[: len(edges) - 1]) / settings.max_efpr)


def sed_scores(scores: FrameScores, events: Events, threshold: float = 0.5, resolution: float = 1.0) -> dict:
    """The event-level scores a stage logs under test/sed/."""
    merged = merge_overlapping(events, scores.durations)
    out = segment_f1(scores, merged, threshold, resolution)
    out["psds1"] = psds(scores, events, SCENARIO_1)
    out["psds2"] = psds(scores, events, SCENARIO_2)
    return out
