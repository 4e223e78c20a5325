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
