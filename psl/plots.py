"""Figures that people would rather look at than read."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from psl.files import write_atomic  # noqa: E402
from psl.labels import frame_spans  # noqa: E402


def per_class_ap_figure(names, ap: np.ndarray, title: str):
    """Horizontal bars of per-class AP, best first (classes without positives left out)."""
    keep = ~np.isnan(ap)
    order = np.argsort(ap[keep])
    labels = np.asarray(names)[keep][order]
    values = ap[keep][order]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.22 * len(values) + 1)))
    ax.barh(np.arange(len(values)), values, color="#3b75af")
    ax.set_yticks(np.arange(len(values)), labels, fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("average precision")
    ax.set_title(f"{title} (mAP {np.mean(values):.3f})")
    fig.tight_layout()
    return fig


def results_figure(names: list[str], values: list[float], xlabel: str):
    """One horizontal bar per run (e.g. the test mAP of teacher, baseline and students)."""
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(values) + 1.2))
    bars = ax.barh(np.arange(len(values)), values, color="#3b75af")
    ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
    ax.set_yticks(np.arange(len(values)), names)
    ax.invert_yaxis()  # first run on top, in pipeline order
    ax.set_xlim(0, max(1.0, max(values, default=0) * 1.15))
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    return fig


def per_class_comparison_figure(names, runs: dict[str, np.ndarray]):
    """Per-class AP of several taggers side by side, classes ordered by the last one's AP."""
    last = list(runs.values())[-1]
    order = np.argsort(np.nan_to_num(last, nan=-1.0))
    fig, ax = plt.subplots(figsize=(7, max(3, 0.3 * len(names) + 1)))
    height = 0.8 / len(runs)
    for k, (label, ap) in enumerate(runs.items()):
        ax.barh(np.arange(len(order)) + k * height, ap[order], height, label=f"{label} (mAP {np.nanmean(ap):.3f})")
    ax.set_yticks(np.arange(len(order)) + 0.4 - height / 2, np.asarray(names)[order], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("average precision (eval split)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


@dataclass
class ExampleClip:
    """One clip of an event-level figure: its truth and, where known, its weak tags."""

    clip_id: str
    duration: float
    events: list[tuple[int, float, float]]  # class, onset, offset (seconds)
    weak: set[int] | None = None


def _lanes(clip: ExampleClip, frames: list[np.ndarray], threshold: float, most: int) -> list[int]:
    """The classes a clip's panel shows: true ones, weak tags, then those some model detects,
    strongest first, at most `most`."""
    true = sorted({c for c, _, _ in clip.events})
    peak = np.max([f.max(axis=0) for f in frames], axis=0)
    others = [int(c) for c in np.argsort(-peak, kind="stable") if peak[c] >= threshold]
    chosen = list(dict.fromkeys(true + sorted(clip.weak or ()) + others))
    return chosen[:most]


def _lane_label(name: str, c: int, clip: ExampleClip, true: set[int]) -> str:
    if clip.weak is None:
        return name
    if c in clip.weak:
        return f"{name} [weak tag]"
    return f"{name} [not in weak]" if c in true else name


def sed_examples_figure(
    names,
    clips: list[ExampleClip],
    frames: dict[str, list[np.ndarray]],
    frame_seconds: float,
    threshold: float = 0.5,
    most_lanes: int = 6,
):
    """Per clip, one lane per class: truth events as grey bars and each model's frame
    probabilities (`frames[model][k]` [frames, classes] for `clips[k]`) as a step curve
    from 0 at the lane's foot to 1 at its top; the dotted line is the detection threshold."""
    lanes = [_lanes(clip, [f[k] for f in frames.values()], threshold, most_lanes) for k, clip in enumerate(clips)]
    fig, axes = plt.subplots(
        len(clips),
        1,
        figsize=(9, 0.45 * sum(len(x) for x in lanes) + 1.0 * len(clips)),
        gridspec_kw={"height_ratios": [max(len(x), 1) for x in lanes]},
        squeeze=False,
        layout="constrained",
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (ax, clip, shown) in enumerate(zip(axes[:, 0], clips, lanes)):
        true = {c for c, _, _ in clip.events}
        for row, c in enumerate(shown):
            foot = len(shown) - 1 - row  # the first class on top
            spans = [(on, off - on) for label, on, off in clip.events if label == c]
            ax.broken_barh(spans, (foot, 0.9), color="#d0d0d0", label="truth" if row == 0 else None)
            ax.hlines(foot + 0.9 * threshold, 0, clip.duration, color="#888", lw=0.6, ls=":")
            ax.hlines(foot, 0, clip.duration, color="#bbb", lw=0.5)  # probability 0 of this lane
            for m, (model, per_clip) in enumerate(frames.items()):
                probs = per_clip[k][:, c]
                starts, ends = frame_spans(len(probs), frame_seconds)
                edges = np.minimum(np.append(starts, ends[-1]), clip.duration)
                colour = colours[m % len(colours)]
                ax.stairs(
                    foot + 0.9 * probs, edges, baseline=None, color=colour, lw=1.3, label=model if row == 0 else None
                )
        labels = [_lane_label(names[c], c, clip, true) for c in shown]
        ax.set_yticks(len(shown) - 1 - np.arange(len(shown)) + 0.45, labels, fontsize=7)
        ax.set_ylim(-0.1, max(len(shown), 1))
        ax.set_xlim(0, clip.duration)
        ax.set_title(clip.clip_id, fontsize=8, loc="left")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="outside upper center", ncol=len(labels))
    axes[-1, 0].set_xlabel("time (s)")
    return fig


def save_figure(figure, path: Path, dpi: int = 120) -> None:
    """Writes `figure` as a PNG file whole or not at all (psl.files.write_atomic), then frees it."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(figure)
    write_atomic(path, buffer.getbuffer())
