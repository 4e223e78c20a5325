"""`psl data info`: what a store root or split holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from psl.data.store import ClipStore, is_store
from psl.errors import MissingInput


def find_splits(path: Path) -> dict[str, Path]:
    """Split name -> directory for a split directory or a root holding splits (one level of
    nesting, e.g. fsd/train)."""
    path = Path(path)
    if is_store(path):
        return {path.name: path}
    found = {}
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        if is_store(child):
            found[child.name] = child
        else:
            found.update({f"{child.name}/{g.name}": g for g in sorted(child.iterdir()) if g.is_dir() and is_store(g)})
    if not found:
        raise MissingInput(f"{path} holds no psl clip store (no store.json in it or its sub-folders)")
    return found


def describe(path: Path) -> str:
    rows = []
    for name, split_dir in find_splits(path).items():
        store = ClipStore(split_dir)
        seconds = store.num_samples / store.sample_rate
        per_clip = np.array([len(lab) for lab in store.labels])
        per_class = store.label_matrix().sum(axis=0)
        rows.append(
            f"{name:<14} {len(store):>8} {seconds.sum() / 3600:>8.2f} {seconds.mean():>7.2f} {seconds.min():>7.2f} "
            f"{seconds.max():>7.2f} {len(store.classes):>7} {per_clip.mean():>9.2f} "
            f"{int(per_class.min()):>6}/{int(np.median(per_class))}/{int(per_class.max())}"
        )
    header = (
        f"{'split':<14} {'clips':>8} {'hours':>8} {'mean s':>7} {'min s':>7} {'max s':>7} {'classes':>7} "
        f"{'labels/clip':>9} clips/class min/median/max"
    )
    return "\n".join([header, "-" * len(header), *rows])
