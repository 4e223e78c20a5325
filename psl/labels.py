"""The pseudo-label store: the teacher's frame-level probabilities of every clip of a split.

    <labels>/<split>/frames.f16   float16 [frames, classes] blocks, clip after clip
    <labels>/<split>/index.csv    clip_id, offset (frames), frames
    <labels>/<split>/labels.json  format, teacher run and checkpoint hash, class list,
                                  the clip store's manifest hash, frame timing, front end

Frame t of a clip covers [t * frame_seconds, (t + 1) * frame_seconds) (the teacher's
output stride), so the label of any span of a clip, a chunk of a grid or a random crop,
is the overlap-weighted mean of its frames: `psl.ops.chunk_pool`. Labels are keyed by
clip id, never by position, and a store is refused for data it was not made from.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from psl import ops
from psl.data.datasets import pad_waves
from psl.data.ragged import RaggedWriter, partial_dir, read_block
from psl.data.store import ClipStore

FORMAT, VERSION = "psl-label-store", 1
MIN_CHUNK_SECONDS = 0.1  # the grid's shortest last partial chunk (as ChunkDataset's default)
SPARSE = np.dtype([("index", "<u2"), ("value", "<f2")])  # one of a frame's top-k classes


def row_format(num_classes: int, top_k: int | None) -> tuple[np.dtype, tuple[int, ...]]:
    """Rows of a label store: dense float16 over all classes, or the top-k (class, value) pairs."""
    return (np.dtype("<f2"), (num_classes,)) if not top_k else (SPARSE, (top_k,))


def sparsify(dense: np.ndarray, top_k: int | None) -> np.ndarray:
    """float [rows, classes] to the stored rows: float16, or each row's top-k classes."""
    if not top_k:
        return dense.astype(np.float16)
    index = np.argsort(-dense, axis=1, kind="stable")[:, :top_k]
    rows = np.empty(index.shape, dtype=SPARSE)
    rows["index"] = index
    rows["value"] = np.take_along_axis(dense, index, axis=1)
    return rows


FRAMES_FILE, INDEX_FILE, META_FILE = "frames.f16", "index.csv", "labels.json"


class LabelMismatch(ValueError):
    """A label store that does not belong to the data it is used with; says why."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LabelStore:
    """Reads one split's pseudo labels; picklable, opened lazily per process like ClipStore."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / META_FILE).is_file():
            hint = (
                " (an unfinished `psl label` left its partial folder: re-run it to finish)"
                if partial_dir(self.path).exists()
                else ""
            )
            raise FileNotFoundError(f"{self.path} is not a psl label store: {META_FILE} is missing{hint}")
        self.meta = json.loads((self.path / META_FILE).read_text())
        if self.meta.get("format") != FORMAT or self.meta.get("version") != VERSION:
            raise ValueError(f"{self.path / META_FILE}: expected {FORMAT} version {VERSION}")
        with open(self.path / INDEX_FILE, newline="") as f:
            rows = list(csv.DictReader(f))
        self.ids = [r["clip_id"] for r in rows]
        self.offsets = np.array([int(r["offset"]) for r in rows], dtype=np.int64)
        self.num_frames = np.array([int(r["frames"]) for r in rows], dtype=np.int64)
        self._index = {cid: i for i, cid in enumerate(self.ids)}
        self.num_classes = len(self.meta["class_ids"])
        self.top_k = self.meta.get("top_k")
        self._row_dtype, self._row_shape = row_format(self.num_classes, self.top_k)
        self._frames_file = str(self.path / FRAMES_FILE)  # built once: a Path join per read cost 10%
        self._fd: int | None = None
        self._pid: int | None = None

    @property
    def frame_seconds(self) -> float:
        return float(self.meta["frame_seconds"])

    def stored_rows(self, clip_id: str) -> np.ndarray:
        """A clip's rows as stored (dense float16, or top-k pairs)."""
        i = self._index[clip_id]
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self._frames_file, os.O_RDONLY), os.getpid()
        return read_block(
            self._fd,
            int(self.offsets[i]),
            int(self.num_frames[i]),
            self._row_dtype,
            self._row_shape,
            self._frames_file,
        )

    def frames(self, clip_id: str) -> np.ndarray:
        """float16 [frames, classes] of one clip (classes outside a sparse store's top k are 0)."""
        rows = self.stored_rows(clip_id)
        if not self.top_k:
            return rows
        dense = np.zeros((len(rows), self.num_classes), dtype=np.float16)
        np.put_along_axis(dense, rows["index"].astype(np.int64), rows["value"], axis=1)
        return dense

    def check_matches(self, store: ClipStore) -> None:
        """Refuses labels made for other data: another manifest, class list or set of clips."""
        if self.meta["class_ids"] != list(store.classes.ids):
            raise LabelMismatch(
                f"{self.path} was made for another class list ({self.num_classes} classes) than {store.path}"
            )
        if self.meta["manifest_sha256"] != store.manifest_sha256:
            missing = sorted(set(store.ids) - set(self.ids))
            detail = f"; e.g. clip {missing[0]!r} has no labels" if missing else ""
            raise LabelMismatch(
                f"{self.path} was made from another version of {store.path} (manifest hash differs){detail}"
            )

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": None}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)


def chunk_target(labels: LabelStore, clip_id: str, start_s: float) -> torch.Tensor:
    """Isolated mode: the stored teacher output of the grid chunk that starts at `start_s`."""
    k = int(round(start_s / float(labels.meta["chunk_hop_s"])))
    return torch.from_numpy(labels.frames(clip_id)[k].astype(np.float32))


def span_targets(labels: LabelStore, clip_id: str, start_s: float, length_s: float) -> torch.Tensor:
    """The pseudo label [classes] of the span [start_s, start_s + length_s) of a clip: the
    overlap-weighted mean of the teacher frames it covers (clipped to the clip's frames)."""
    frames = torch.from_numpy(labels.frames(clip_id)).unsqueeze(0)
    step = labels.frame_seconds
    starts = torch.tensor([[start_s / step]], dtype=torch.float64)
    return ops.chunk_pool(frames, starts, length_s / step)[0, 0]


class PseudoLabelled(Dataset):
    """Items of a chunk or crop dataset with their pseudo label `psl`: the teacher frames
    over exactly the item's span, or (isolated labels) the teacher's output on that chunk."""

    def __init__(self, base: Dataset, labels: LabelStore, length_s: float) -> None:
        self.base, self.labels, self.length_s = base, labels, length_s
        self.store = base.store
        self.isolated = labels.meta["mode"] == "isolated"

    def __len__(self) -> int:
        return len(self.base)

    def clip_labels(self):
        return self.base.clip_labels()

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __getitem__(self, i: int) -> dict:
        item = self.base[i]
        clip_id = self.store.ids[item["clip"]]
        start_s = item["start"] / self.store.sample_rate
        item["psl"] = (
            chunk_target(self.labels, clip_id, start_s)
            if self.isolated
            else span_targets(self.labels, clip_id, start_s, self.length_s)
        )
        return item


Segment = tuple[int, int, int]  # (clip, start, end) in samples: one teacher input


def _batch_segments(todo: list[tuple[int, list[tuple[int, int]]]], batch_size: int) -> list[list[Segment]]:
    """The teacher's batches over the clips `todo` (with their segments), in order: clips are
    gathered until their segments fill a batch, then those segments run `batch_size` at a time."""
    batches: list[list[Segment]] = []
    group: list[Segment] = []
    for position, (clip, spans) in enumerate(todo):
        group.extend((clip, start, end) for start, end in spans)
        if len(group) >= batch_size or position + 1 == len(todo):
            batches.extend(group[first : first + batch_size] for first in range(0, len(group), batch_size))
            group = []
    return batches


class _SegmentBatches(Dataset):
    """Batch k of the labelling work as the teacher takes it: int16 waveforms zero padded to
    the longest, and their lengths (a dataset, so that DataLoader workers read ahead)."""

    def __init__(self, store: ClipStore, batches: list[list[Segment]]) -> None:
        self.store, self.batches = store, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_waves([self.store.read(clip, start, end) for clip, start, end in self.batches[k]])


def _copy_to_host(*tensors: torch.Tensor) -> tuple[list[torch.Tensor], Callable[[], None]]:
    """The tensors on the host, copied without waiting for the device; valid once the returned
    `wait()` has returned (at once on a CPU)."""
    if tensors[0].device.type != "cuda":
        return list(tensors), lambda: None
    hosts = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
    for host, tensor in zip(hosts, tensors):
        host.copy_(tensor, non_blocking=True)
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(tensors[0].device))  # the copies' stream, not cuda:0's
    return hosts, done.synchronize


@torch.inference_mode()
def write_label_store(
    teacher: torch.nn.Module,
    store: ClipStore,
    out: Path,
    meta: dict,
    *,
    isolated: tuple[float, float] | None = None,
    top_k: int | None = None,
    clips: list[int] | None = None,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    amp: str = "bf16",
    workers: int = 0,
    progress: bool = True,
) -> LabelStore:
    """Runs the teacher over every clip of `store` (or the indices `clips`, one rank's shard),
    resuming a partial run, and writes, keyed by clip id, float16: its frame probabilities, or
    with `isolated=(L, H)` (the paper's exact mode) its clip probability for each chunk of
    the grid, each chunk run on its own. With `top_k`, each row keeps only its k most likely
    classes (for large class counts). `workers` processes read and pad the batches ahead of
    the teacher (in pinned memory for a GPU)."""
    from tqdm import tqdm

    from psl.data.datasets import chunk_grid
    from psl.evaluate import autocast

    out = Path(out)
    if (out / META_FILE).is_file():
        return LabelStore(out)
    device = torch.device(device)
    sr = store.sample_rate
    writer = RaggedWriter(out, FRAMES_FILE, *row_format(teacher.num_classes, top_k))

    def segments(i: int) -> list[tuple[int, int]]:
        n = int(store.num_samples[i])
        if isolated is None:
            return [(0, n)]
        return chunk_grid(n, round(isolated[0] * sr), round(isolated[1] * sr), round(MIN_CHUNK_SECONDS * sr))

    chosen = set(range(len(store))) if clips is None else set(clips)
    todo = [
        (i, segments(i))
        for i in np.argsort(store.num_samples, kind="stable").tolist()
        if i in chosen and not writer.done(store.ids[i])
    ]
    teacher.eval().to(device)
    loader = DataLoader(
        _SegmentBatches(store, _batch_segments(todo, batch_size)),
        batch_size=None,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    waiting = collections.deque((i, len(spans)) for i, spans in todo)  # clips in the order they are written
    rows: list[np.ndarray] = []  # teacher outputs of the segments not yet written, in order

    def launch(wave: torch.Tensor, lengths: torch.Tensor) -> Callable[[], list[np.ndarray]]:
        """Starts the teacher on a batch; returns what waits for its outputs, one per segment."""
        with autocast(device, amp):
            result = teacher(wave.to(device, non_blocking=True), lengths)
        if isolated is not None:
            (clip,), wait = _copy_to_host(result.clip.float())
        else:
            (frames, valid), wait = _copy_to_host(result.frames.float(), result.valid_frames)

        def fetch() -> list[np.ndarray]:
            wait()
            if isolated is not None:
                return list(clip.numpy()[:, None, :])
            return [frames[r, : int(valid[r])].numpy() for r in range(len(frames))]

        return fetch

    def write(fetch: Callable[[], list[np.ndarray]]) -> None:
        rows.extend(fetch())
        while waiting and len(rows) >= waiting[0][1]:
            i, count = waiting.popleft()
            writer.append(store.ids[i], sparsify(np.concatenate(rows[:count]), top_k))
            del rows[:count]
            bar.update()

    with (
        tqdm(
            total=len(chosen),
            initial=len(chosen) - len(todo),
            desc=f"label {store.path.name}",
            unit="clip",
            disable=not progress,
        ) as bar,
        writer.closing_on_error(),
    ):
        # One batch in flight: the device runs batch k while the host writes batch k - 1.
        in_flight = None
        try:
            for wave, lengths in loader:
                previous, in_flight = in_flight, launch(wave, lengths)
                if previous is not None:
                    write(previous)
        finally:  # also when reading or the teacher fails: what the teacher finished is kept
            if in_flight is not None:
                write(in_flight)
    index = _index_text(store, writer.entries, chosen)
    mode = (
        dict(mode="frames")
        if isolated is None
        else dict(mode="isolated", chunk_length_s=isolated[0], chunk_hop_s=isolated[1], min_chunk_s=MIN_CHUNK_SECONDS)
    )
    full_meta = dict(
        format=FORMAT,
        version=VERSION,
        manifest_sha256=store.manifest_sha256,
        class_ids=list(store.classes.ids),
        split=store.path.name,
        top_k=top_k,
        **meta,
        **mode,
    )
    writer.publish({INDEX_FILE: index, META_FILE: json.dumps(full_meta, indent=2) + "\n"})
    return LabelStore(out)


def _index_text(store: ClipStore, entries: list[dict], chosen: set[int]) -> str:
    """index.csv rows in the clip store's order, whatever order the blocks were written in."""
    offsets, offset = {}, 0
    for e in entries:
        offsets[e["id"]] = (offset, e["rows"])
        offset += e["rows"]
    out = io.StringIO()
    rows = csv.writer(out)
    rows.writerow(["clip_id", "offset", "frames"])
    for i, cid in enumerate(store.ids):
        if i in chosen:
            rows.writerow([cid, *offsets[cid]])
    return out.getvalue()


def merge_shards(shards: list[LabelStore], store: ClipStore, out: Path) -> LabelStore:
    """One label store from the shards that torchrun ranks wrote, blocks in clip store order."""
    out = Path(out)
    if (out / META_FILE).is_file():
        return LabelStore(out)
    owner = {cid: shard for shard in shards for cid in shard.ids}
    missing = [cid for cid in store.ids if cid not in owner]
    if missing:
        raise ValueError(f"label shards lack {len(missing)} clips of {store.path}, e.g. {missing[0]!r}")
    writer = RaggedWriter(out, FRAMES_FILE, *row_format(shards[0].num_classes, shards[0].top_k))
    for cid in store.ids:
        if not writer.done(cid):
            writer.append(cid, owner[cid].stored_rows(cid))
    meta = dict(shards[0].meta)
    writer.publish(
        {
            INDEX_FILE: _index_text(store, writer.entries, set(range(len(store)))),
            META_FILE: json.dumps(meta, indent=2) + "\n",
        }
    )
    return LabelStore(out)
