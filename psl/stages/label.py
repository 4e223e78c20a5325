"""Stage `label`: the teacher runs once over the student's splits and its frame-level
probabilities become the pseudo-label store, logged as an MLflow `label` run."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path


from psl import tracking
from psl.analysis import analyse
from psl.checkpoints import open_tagger
from psl.data.store import ClipStore
from psl.data.ragged import recorded_blocks
from psl.labels import META_FILE, LabelMismatch, LabelStore, merge_shards, write_label_store
from psl.locks import exclusive
from psl.models.mobilenetv2 import TIME_STRIDE
from psl.stages.common import open_split
from psl.train import Distributed, default_device, loader_workers


@dataclass
class LabelResult:
    run_id: str
    stores: dict[str, LabelStore]
    summary: dict[str, float]


def settings_of(meta: dict) -> tuple:
    """What decides the content of a label store besides the data: teacher, mode, grid, top-k."""
    return (
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
    model, config, checkpoint_sha, teacher_run = opened.model, opened.config, opened.sha256, opened.run_id
    for split in stores:
        existing = Path(out) / split
        wanted = (checkpoint_sha, "frames" if isolated is None else "isolated", *(isolated or (None, None)), top_k)
        if (existing / META_FILE).exists() and settings_of(LabelStore(existing).meta) != wanted:
            raise LabelMismatch(f"{existing} holds labels of another teacher or labelling mode; choose another --out")
    frontend = model.frontend
    meta = dict(
        teacher_run_id=teacher_run or "",
        teacher_checkpoint_sha256=checkpoint_sha,
        class_names=config["class_names"],
        frame_seconds=TIME_STRIDE * frontend.hop_length / frontend.sample_rate,
        frontend=dict(
            sample_rate=frontend.sample_rate,
            n_fft=frontend.n_fft,
            hop_length=frontend.hop_length,
            n_mels=frontend.n_mels,
        ),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    dataset = next(iter(stores.values())).meta.get("dataset", Path(data).name)
    tags = {**({"psl.teacher_run_id": teacher_run} if teacher_run else {}), **(tags or {})}
    tags["psl.labels_dir"] = str(Path(out).resolve())
    variant = "psl-frames" if isolated is None else f"psl-{isolated[0]:g}s-isolated"
    # Named apart from the `label` entry point's own params, which MLflow logs first.
    params = {
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

    def label(split: str, store: ClipStore) -> LabelStore | None:
        final = Path(out) / split
        options = dict(
            isolated=isolated,
            top_k=top_k,
            batch_size=batch_size,
            device=device,
            amp=amp,
            workers=workers,
            progress=progress and ddp.is_main,
        )
        if ddp.world_size == 1 or (final / META_FILE).is_file():
            return write_label_store(model, store, final, meta, **options) if ddp.is_main else None
        shards = Path(out) / f".{split}.shards"
        write_label_store(
            model,
            store,
            shards / f"rank{ddp.rank}",
            meta,
            clips=list(range(ddp.rank, len(store), ddp.world_size)),
            **options,
        )
        ddp.barrier()
        merged = None
        if ddp.is_main:
            merged = merge_shards([LabelStore(shards / f"rank{r}") for r in range(ddp.world_size)], store, final)
            shutil.rmtree(shards)
        ddp.barrier()
        return merged

    if not ddp.is_main:
        for split, store in stores.items():
            label(split, store)
        return None
    with (
        exclusive(Path(out) / ".lock", f"the label folder {out}"),
        tracking.stage_run(
            "label",
            run_name=f"label-{variant}",
            variant=variant,
            dataset=dataset,
            extra_tags=tags,
            config=params,
            out=Path(out),
        ) as run,
    ):
        written, summary = {}, {}
        for split, store in stores.items():
            summary[f"labels/{split}/resumed_clips"] = recorded_blocks(Path(out) / split)
            written[split] = label(split, store)
            analysis = analyse(store, written[split])
            summary.update({f"labels/{split}/{name}": value for name, value in analysis.metrics.items()})
            for name, figure in analysis.figures.items():
                tracking.log_figure(figure, f"analysis/{split}/{name}")
        tracking.log_metrics(summary)
        if log_store:
            for split in stores:
                tracking.log_dir(Path(out) / split, f"labels/{split}")
        return LabelResult(run.info.run_id, written, summary)
