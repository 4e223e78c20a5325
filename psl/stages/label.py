"""Stage `label`: the teacher runs once over the student's splits and its frame-level
probabilities become the pseudo-label store, logged as an MLflow `label` run."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch

from psl import tracking
from psl.analysis import analyse
from psl.checkpoints import OpenedTagger, open_tagger
from psl.data.store import ClipStore
from psl.data.ragged import recorded_blocks
from psl.labels import META_FILE, LabelMismatch, LabelStore, write_label_store, write_sharded_label_store
from psl.locks import exclusive
from psl.models.mobilenetv2 import TIME_STRIDE
from psl.stages.common import open_split
from psl.trainer import Distributed, default_device, loader_workers


@dataclass
class LabelResult:
    run_id: str
    stores: dict[str, LabelStore]
    summary: dict[str, float]


@dataclass(frozen=True)
class LabelSettings:
    """What decides the content of a label store besides the data: teacher, mode, grid, top-k.
    A folder whose store has other settings holds other labels and is never resumed."""

    teacher_checkpoint_sha256: str
    mode: str
    chunk_length_s: float | None = None
    chunk_hop_s: float | None = None
    top_k: int | None = None

    @classmethod
    def of(cls, meta: dict) -> LabelSettings:
        """The settings a written store's metadata records."""
        return cls(
            meta["teacher_checkpoint_sha256"],
            meta["mode"],
            meta.get("chunk_length_s"),
            meta.get("chunk_hop_s"),
            meta.get("top_k"),
        )


def run_label(
    teacher: str,
    data: Path,
    out: Path,
    *,
    splits: tuple[str, ...] = ("balanced", "val"),
    isolated: tuple[float, float] | None = None,
    top_k: int | None = None,
    batch_size: int = 32,
    amp: str = "bf16",
    workers: int | None = None,
    log_store: bool = True,
    progress: bool = True,
    tags: dict[str, str] | None = None,
) -> LabelResult | None:
    """Labels `splits` of the store root `data` with the teacher (a checkpoint or a run id):
    its frame probabilities, or with `isolated=(L, H)` its output on each grid chunk alone.
    Under torchrun each rank labels every world_size-th clip and rank 0 merges the shards;
    the result comes back on rank 0 (None elsewhere). `workers` reading ahead: by default none
    on a CPU (they would compete with the teacher), up to 8 per GPU."""
    ddp = Distributed.from_env()
    tracking.tracked_model(teacher)  # a mistyped checkpoint path is named, not looked up as a run id
    if ddp.is_main:  # only rank 0 talks to MLflow
        tracking.check_tracking()
    stores = {s: open_split(data, s) for s in splits}
    device = default_device(ddp)
    if workers is None:
        workers = loader_workers(device, ddp.world_size)
    opened = open_tagger(teacher, device, stores=stores.values(), role="teacher")
    mode = "frames" if isolated is None else "isolated"
    _refuse_other_settings(Path(out), stores, LabelSettings(opened.sha256, mode, *(isolated or (None, None)), top_k))
    options = dict(isolated=isolated, top_k=top_k, batch_size=batch_size, device=device, amp=amp, workers=workers)
    label = functools.partial(
        _label_split, opened.model, Path(out), _store_meta(opened), ddp, progress=progress and ddp.is_main, **options
    )
    if not ddp.is_main:
        for split, store in stores.items():
            label(split, store)
        return None
    variant = "psl-frames" if isolated is None else f"psl-{isolated[0]:g}s-isolated"
    tags = {**({"psl.teacher_run_id": opened.run_id} if opened.run_id else {}), **(tags or {})}
    tags["psl.labels_dir"] = str(Path(out).resolve())
    run = tracking.stage_run(
        "label",
        run_name=f"label-{variant}",
        variant=variant,
        dataset=next(iter(stores.values())).meta.get("dataset", Path(data).name),
        extra_tags=tags,
        config=_label_params(teacher, data, splits, amp, opened.sha256, isolated, top_k),
        out=Path(out),
    )
    return _label_tracked(label, stores, Path(out), run, log_store=log_store)


def _label_params(
    teacher: str,
    data: Path,
    splits: tuple[str, ...],
    amp: str,
    checkpoint_sha: str,
    isolated: tuple[float, float] | None,
    top_k: int | None,
) -> dict:
    """The `label` run's params, named apart from the `label` entry point's own, which MLflow
    logs first."""
    return {
        "label": {
            "teacher": teacher,
            "data": str(data),
            "splits": list(splits),
            "amp": amp,
            "teacher_checkpoint_sha256": checkpoint_sha,
            "mode": "frames" if isolated is None else "isolated",
            "chunk": list(isolated or []),
            "top_k": top_k or 0,
        }
    }


def _refuse_other_settings(out: Path, stores: dict[str, ClipStore], wanted: LabelSettings) -> None:
    """Resuming a store of another teacher or mode would mix two kinds of labels in one file."""
    for split in stores:
        existing = out / split
        if (existing / META_FILE).exists() and LabelSettings.of(LabelStore(existing).meta) != wanted:
            raise LabelMismatch(f"{existing} holds labels of another teacher or labelling mode; choose another --out")


def _store_meta(opened: OpenedTagger) -> dict:
    """What each store records of its teacher, so that a student reads the frames on its grid."""
    frontend = opened.model.frontend
    return dict(
        teacher_run_id=opened.run_id or "",
        teacher_checkpoint_sha256=opened.sha256,
        class_names=opened.config["class_names"],
        frame_seconds=TIME_STRIDE * frontend.hop_length / frontend.sample_rate,
        frontend=dict(
            sample_rate=frontend.sample_rate,
            n_fft=frontend.n_fft,
            hop_length=frontend.hop_length,
            n_mels=frontend.n_mels,
        ),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def _label_split(
    model: torch.nn.Module, out: Path, meta: dict, ddp: Distributed, split: str, store: ClipStore, **options
) -> LabelStore | None:
    """One split's store, on every rank; the store comes back on rank 0 (None elsewhere). A
    finished store is only opened, whatever the world size."""
    final = out / split
    if ddp.world_size == 1 or (final / META_FILE).is_file():
        return write_label_store(model, store, final, meta, **options) if ddp.is_main else None
    shards = out / f".{split}.shards"
    return write_sharded_label_store(
        model, store, final, shards, meta, rank=ddp.rank, world_size=ddp.world_size, barrier=ddp.barrier, **options
    )


def _label_tracked(
    label: Callable[[str, ClipStore], LabelStore | None],
    stores: dict[str, ClipStore],
    out: Path,
    stage_run: AbstractContextManager,
    *,
    log_store: bool,
) -> LabelResult:
    """Rank 0's part: labels each split inside the `label` run (one writer per folder at a time),
    logging how much was resumed, the analysis of the labels and, with `log_store`, the stores."""
    with exclusive(out / ".lock", f"the label folder {out}"), stage_run as run:
        written, summary = {}, {}
        for split, store in stores.items():
            summary[f"labels/{split}/resumed_clips"] = recorded_blocks(out / split)
            written[split] = label(split, store)
            analysis = analyse(store, written[split])
            summary.update({f"labels/{split}/{name}": value for name, value in analysis.metrics.items()})
            for name, figure in analysis.figures.items():
                tracking.log_figure(figure, f"analysis/{split}/{name}")
        tracking.log_metrics(summary)
        if log_store:
            for split in stores:
                tracking.log_dir(out / split, f"labels/{split}")
        return LabelResult(run.info.run_id, written, summary)
