"""`psl analyse`: the missing-label analysis of a label store (psl.analysis), on its own.

Every `psl label` run logs the same analysis to MLflow; this command reruns it on any
stored labels, with another threshold or split, and writes the figures to a folder."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from psl.analysis import analyse
from psl.plots import save_figure
from psl.stages.common import open_split
from psl.stages.student import open_labels


@dataclass(frozen=True)
class AnalysisReport:
    metrics: dict[str, float]  # psl.analysis.Analysis.metrics
    figures: list[Path]  # the PNG files written


def run_analysis(labels: str, root: Path, split: str, threshold: float, out: Path) -> AnalysisReport:
    """Analyses the labels of `split` (`labels`: a `psl label` folder or its run id) against the
    store under `root` and writes its figures as `out/SPLIT-NAME.png`."""
    store = open_split(root, split)
    with tempfile.TemporaryDirectory(prefix="psl-analyse-") as scratch:
        label_store, _ = open_labels(labels, split, Path(scratch))
        label_store.check_matches(store)
        result = analyse(store, label_store, threshold)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{split}-{name}" for name in result.figures]
    for path, figure in zip(written, result.figures.values()):
        save_figure(figure, path)
    return AnalysisReport(result.metrics, written)
