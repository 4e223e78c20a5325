"""Evaluation of a tagger on the full clips of a split: predictions, metrics, the per-class table."""

from __future__ import annotations

import csv
import io
from contextlib import nullcontext

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from psl.data.datasets import ClipDataset, pad_collate
from psl.data.store import ClipStore
from psl.metrics import TaggingMetrics, tagging_metrics


class _ByLength(Sampler[int]):
    """Clips in order of length, so a batch pads as little as possible."""

    def __init__(self, store: ClipStore) -> None:
        self.order = np.argsort(store.num_samples, kind="stable").tolist()

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def autocast(device: torch.device, amp: str):
    """The autocast context for "bf16", "fp16" or "fp32" on this device."""
    if amp == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


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
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = DataLoader(
        ClipDataset(store), batch_size=batch_size, sampler=_ByLength(store), collate_fn=pad_collate, num_workers=workers
    )
    rows = None
    try:
        for batch in loader:
            with autocast(device, amp):
                out = getattr(model(batch["wave"].to(device, non_blocking=True), batch["lengths"]), output)
            if rows is None:
                rows = np.zeros((len(store), out.shape[1]), dtype=np.float32)
            rows[batch["clip"].numpy()] = out.float().cpu().numpy()
    finally:
        model.train(was_training)
    return rows


def evaluate(model: torch.nn.Module, store: ClipStore, **options) -> tuple[TaggingMetrics, np.ndarray]:
    scores = predict(model, store, **options)
    return tagging_metrics(store.label_matrix(), scores), scores


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
