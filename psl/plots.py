"""Figures that people would rather look at than read."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
