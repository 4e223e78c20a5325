"""Timing that holds up on shared, noisy machines: candidates measured in interleaved
repetitions and compared by their medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(
    candidates: dict[str, Callable[[], object]], device: torch.device, repeats: int, warmup: int = 2
) -> dict[str, float]:
    """Median seconds per call of each candidate, running them in turn `repeats` times."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


@dataclass
class Comparison:
    """One row of a benchmark table: items/s of psl and of its baseline."""

    what: str
    device: str
    unit: str
    psl: float
    baseline_name: str
    baseline: float

    @property
    def ratio(self) -> float:
        return self.psl / self.baseline


def _rate(value: float) -> str:
    """Whole numbers with thousands separators; three significant digits below 100."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def format_table(rows: list[Comparison]) -> str:
    header = f"{'benchmark':<44} {'device':<6} {'psl':>12} {'baseline':>12}  {'ratio':>6}  baseline is"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.what:<44} {r.device:<6} {_rate(r.psl):>12} {_rate(r.baseline):>12}  {r.ratio:>5.2f}x  "
            f"{r.baseline_name} ({r.unit})"
        )
    return "\n".join(lines)
