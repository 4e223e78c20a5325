"""The pseudo-label store: the teacher's frame-level probabilities of every clip of a split.

    <labels>/<split>/frames.f16   float16 [frames, classes] blocks, clip after clip
    <labels>/<split>/index.csv    clip_id, offset (frames), frames
    <labels>/<split>/labels.json  format, teacher run and checkpoint hash, class list,
                                  the clip store's manifest hash, frame timing, front end

Frame t of a clip is centred on t * frame_seconds (the teacher's output stride) and covers
[(t - 1/2) * frame_seconds, (t + 1/2) * frame_seconds): each stride-2 stage of the network
(kernel 3, padding 1) centres its output i on its input 2i, and log-mel frame j is centred
on sample hop * j (tests/test_frame_timing.py measures it). The label of any span of a
clip, a chunk of a grid or a random crop, is the overlap-weighted mean of its frames:
`psl.ops.chunk_pool`, whose frame t covers [t, t + 1), at `frame_position(seconds)`. Labels are keyed by
clip id, never by position, and a store is refused for data it was not made from.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from psl import ops
from psl.data.datasets import chunk_grid, pad_waves
from psl.data.ragged import RaggedWriter, partial_dir, read_block
from psl.data.store import ClipStore
from psl.errors import CorruptLabels, LabelMismatch, MissingInput
from psl.provenance import file_sha256

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


# What readers of a store look up in labels.json; a store that lacks one is refused on open.
REQUIRED_META = ("class_ids", "manifest_sha256", "frame_seconds", "mode", "teacher_checkpoint_sha256")
ISOLATED_META = ("chunk_length_s", "chunk_hop_s")
CHECKSUM_KEYS = ("frames_sha256", "index_sha256")  # absent from stores written before they were recorded
INDEX_HEADER = ["clip_id", "offset", "frames"]
DAMAGED = "the store is damaged: delete its folder and label again"
LARGEST_ROW = 2**53  # offsets and counts beyond this are not real frame counts


def text_sha256(text: str) -> str:
    """The checksum of a store's text file, over its text as UTF-8 (as it is written and read)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_meta(path: Path) -> dict:
    """labels.json of the store in `path`, checked for the keys every reader needs."""
    meta_file = path / META_FILE
    if not meta_file.is_file():
        hint = (
            " (an unfinished `psl label` left its partial folder: re-run it to finish)"
            if partial_dir(path).exists()
            else ""
        )
        raise MissingInput(f"{path} is not a psl label store: {META_FILE} is missing{hint}")
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptLabels(f"{meta_file}: not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CorruptLabels(f"{meta_file}: expected {FORMAT} version {VERSION}")
    needed = REQUIRED_META + (ISOLATED_META if meta.get("mode") == "isolated" else ())
    if any(key in meta for key in CHECKSUM_KEYS):  # a store written with checksums has both
        needed += CHECKSUM_KEYS
    missing = [key for key in needed if key not in meta]
    if missing:
        raise CorruptLabels(f"{meta_file}: lacks the key {missing[0]!r}; {DAMAGED}")
    if not isinstance(meta["class_ids"], list) or not meta["class_ids"]:
        raise CorruptLabels(f"{meta_file}: class_ids is not a non-empty list")
    top_k = meta.get("top_k")
    if top_k not in (None, 0) and not (type(top_k) is int and 0 < top_k <= len(meta["class_ids"])):
        raise CorruptLabels(f"{meta_file}: top_k {top_k!r} is not a class count")
    seconds = meta["frame_seconds"]
    if type(seconds) not in (int, float) or not 0 < seconds < 3600:  # also refuses nan
        raise CorruptLabels(f"{meta_file}: frame_seconds {seconds!r} is not a frame duration")
    if meta["mode"] not in ("frames", "isolated"):
        raise CorruptLabels(f"{meta_file}: mode {meta['mode']!r} is neither frames nor isolated")
    return meta


def read_index(index_file: Path, recorded_sha256: str | None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Clip ids, offsets and frame counts of index.csv; checked against its recorded checksum
    (cheap: the file is read whole anyway), so that rows edited in place are refused."""
    try:
        with open(index_file, newline="") as f:
            text = f.read()
    except FileNotFoundError:
        raise CorruptLabels(f"{index_file} is missing; {DAMAGED}") from None
    except UnicodeDecodeError:
        raise CorruptLabels(f"{index_file}: not a text file") from None
    if recorded_sha256 is not None and text_sha256(text) != recorded_sha256:
        raise CorruptLabels(f"{index_file} does not match the checksum in {META_FILE}: it was changed; {DAMAGED}")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if rows and rows[0] != INDEX_HEADER:
        raise CorruptLabels(f"{index_file}: expected the header {','.join(INDEX_HEADER)}")
    if len(rows) <= 1:
        raise CorruptLabels(f"{index_file} lists no clips; {DAMAGED}")
    ids, numbers = [], []
    for line, row in enumerate(rows[1:], start=2):
        try:
            clip_id, offset, frames = row
            numbers.append((int(offset), int(frames)))
        except ValueError:
            raise CorruptLabels(f"{index_file}: line {line}: expected clip_id,offset,frames, got {row}") from None
        if not (0 <= numbers[-1][0] < LARGEST_ROW and 0 <= numbers[-1][1] < LARGEST_ROW):
            raise CorruptLabels(f"{index_file}: line {line}: offset or frames out of range")
        ids.append(clip_id)
    if len(set(ids)) != len(ids):
        raise CorruptLabels(f"{index_file}: a clip id is listed twice")
    table = np.array(numbers, dtype=np.int64)
    return ids, table[:, 0].copy(), table[:, 1].copy()


def check_layout(frames_file: Path, offsets: np.ndarray, counts: np.ndarray, row_bytes: int, index_file: Path) -> None:
    """The index's blocks tile the frames file exactly: no gap, no overlap, nothing beyond its
    end and nothing after the last block (blocks may lie in any order: they are written as the
    teacher finishes them, the index in clip store order)."""
    try:
        size = frames_file.stat().st_size
    except FileNotFoundError:
        raise CorruptLabels(f"{frames_file} is missing; {DAMAGED}") from None
    order = np.lexsort((counts, offsets))  # zero-frame blocks before the block at their offset
    starts, ends = offsets[order], offsets[order] + counts[order]
    if starts[0] != 0 or not np.array_equal(starts[1:], ends[:-1]):
        raise CorruptLabels(f"{index_file}: the clips' offsets overlap or leave gaps in {FRAMES_FILE}; {DAMAGED}")
    expected = int(ends[-1]) * row_bytes
    if size != expected:
        state = "truncated" if size < expected else "longer than its index says"
        raise CorruptLabels(
            f"{frames_file} holds {size} bytes, {expected} expected from {INDEX_FILE}: {state}; {DAMAGED}"
        )


class LabelStore:
    """Reads one split's pseudo labels; picklable, opened lazily per process like ClipStore.

    Opening checks that the files agree (keys, index checksum, block layout, file size);
    `verify()` also checks the frames against their checksum. Stores written before
    checksums were recorded open with the layout checks alone."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.meta = read_meta(self.path)
        self.ids, self.offsets, self.num_frames = read_index(self.path / INDEX_FILE, self.meta.get("index_sha256"))
        self._index = {cid: i for i, cid in enumerate(self.ids)}
        self.num_classes = len(self.meta["class_ids"])
        self.top_k = self.meta.get("top_k")
        self._row_dtype, self._row_shape = row_format(self.num_classes, self.top_k)
        row_bytes = self._row_dtype.itemsize * int(np.prod(self._row_shape))
        check_layout(self.path / FRAMES_FILE, self.offsets, self.num_frames, row_bytes, self.path / INDEX_FILE)
        self._frames_file = str(self.path / FRAMES_FILE)  # built once: a Path join per read cost 10%
        self._fd: int | None = None
        self._pid: int | None = None

    @property
    def has_checksums(self) -> bool:
        return all(key in self.meta for key in CHECKSUM_KEYS)

    def verify(self) -> bool:
        """The full check: the frames file against its recorded sha256 (reads it whole).
        False when the store predates checksums (only the checks made on open apply)."""
        if not self.has_checksums:
            return False
        if file_sha256(Path(self._frames_file)) != self.meta["frames_sha256"]:
            raise CorruptLabels(
                f"{self._frames_file} does not match the checksum in {META_FILE}: it was changed; {DAMAGED}"
            )
        return True

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
    starts = torch.tensor([[frame_position(start_s, step)]], dtype=torch.float64)
    return ops.chunk_pool(frames, starts, length_s / step)[0, 0]


def frame_spans(count: int, frame_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end seconds of frames 0..count-1 (frame t is centred on t * frame_seconds;
    the first starts at 0, not half a frame before the clip)."""
    centres = np.arange(count) * frame_seconds
    return np.maximum(centres - frame_seconds / 2, 0.0), centres + frame_seconds / 2


def frame_position(seconds: float, frame_seconds: float) -> float:
    """A time of the clip in chunk_pool's frame coordinates, where frame t covers [t, t + 1):
    half a frame later than seconds / frame_seconds, since frame t is centred on t * frame_seconds."""
    return seconds / frame_seconds + 0.5


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

    out = Path(out)
    if (out / META_FILE).is_file():
        return LabelStore(out)
    device = torch.device(device)
    writer = RaggedWriter(out, FRAMES_FILE, *row_format(teacher.num_classes, top_k))
    chosen = set(range(len(store))) if clips is None else set(clips)
    todo = [
        (i, _segments(store, i, isolated))
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
        write = _clip_writer(writer, store, todo, top_k, bar.update)
        _one_batch_in_flight(loader, _teacher_launcher(teacher, device, amp, isolated), write)
    return _publish(writer, _index_text(store, writer.entries, chosen), _full_meta(store, meta, isolated, top_k))


def _segments(store: ClipStore, i: int, isolated: tuple[float, float] | None) -> list[tuple[int, int]]:
    """The sample spans of clip `i` the teacher runs on: the whole clip, or each grid chunk."""
    sr = store.sample_rate
    n = int(store.num_samples[i])
    if isolated is None:
        return [(0, n)]
    return chunk_grid(n, round(isolated[0] * sr), round(isolated[1] * sr), round(MIN_CHUNK_SECONDS * sr))


_Fetch = Callable[[], list[np.ndarray]]


def _teacher_launcher(
    teacher: torch.nn.Module, device: torch.device, amp: str, isolated: tuple[float, float] | None
) -> Callable[[torch.Tensor, torch.Tensor], _Fetch]:
    """`launch(wave, lengths)` starts the teacher on a batch and returns what waits for its
    outputs, one array per segment: frames cut to their valid length, or the clip row."""
    from psl.precision import autocast

    def launch(wave: torch.Tensor, lengths: torch.Tensor) -> _Fetch:
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

    return launch


def _clip_writer(
    writer: RaggedWriter,
    store: ClipStore,
    todo: list[tuple[int, list[tuple[int, int]]]],
    top_k: int | None,
    written: Callable[[], object],
) -> Callable[[_Fetch], None]:
    """`write(fetch)` takes a batch's segment outputs and appends every clip whose segments are
    all in: a clip's chunks may span batches. `written()` is called once per clip appended."""
    waiting = collections.deque((i, len(spans)) for i, spans in todo)  # clips in the order they are written
    rows: list[np.ndarray] = []  # teacher outputs of the segments not yet written, in order

    def write(fetch: _Fetch) -> None:
        rows.extend(fetch())
        while waiting and len(rows) >= waiting[0][1]:
            i, count = waiting.popleft()
            writer.append(store.ids[i], sparsify(np.concatenate(rows[:count]), top_k))
            del rows[:count]
            written()

    return write


def _one_batch_in_flight(
    batches: Iterable[tuple], launch: Callable[..., _Fetch], write: Callable[[_Fetch], None]
) -> None:
    """Runs `launch(*batch)` over `batches`, with one batch in flight: the device runs batch k
    while the host writes batch k - 1. When reading or launching fails, the batch already
    launched is still written, so that what the device finished is kept."""
    in_flight = None
    try:
        for batch in batches:
            previous, in_flight = in_flight, launch(*batch)
            if previous is not None:
                write(previous)
    finally:
        if in_flight is not None:
            write(in_flight)


def _full_meta(store: ClipStore, meta: dict, isolated: tuple[float, float] | None, top_k: int | None) -> dict:
    """meta.json: the format, which clip store and classes the rows belong to, and the mode."""
    mode = (
        dict(mode="frames")
        if isolated is None
        else dict(mode="isolated", chunk_length_s=isolated[0], chunk_hop_s=isolated[1], min_chunk_s=MIN_CHUNK_SECONDS)
    )
    return dict(
        format=FORMAT,
        version=VERSION,
        manifest_sha256=store.manifest_sha256,
        class_ids=list(store.classes.ids),
        split=store.path.name,
        top_k=top_k,
        **meta,
        **mode,
    )


def _publish(writer: RaggedWriter, index: str, meta: dict) -> LabelStore:
    """Finishes a store: its index and metadata, with the checksums of frames and index that
    `LabelStore` and `verify()` check it against."""
    sums = dict(frames_sha256=file_sha256(writer.partial / FRAMES_FILE), index_sha256=text_sha256(index))
    writer.publish({INDEX_FILE: index, META_FILE: json.dumps({**meta, **sums}, indent=2) + "\n"})
    return LabelStore(writer.path)


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
        raise CorruptLabels(f"label shards lack {len(missing)} clips of {store.path}, e.g. {missing[0]!r}")
    writer = RaggedWriter(out, FRAMES_FILE, *row_format(shards[0].num_classes, shards[0].top_k))
    for cid in store.ids:
        if not writer.done(cid):
            writer.append(cid, owner[cid].stored_rows(cid))
    meta = {k: v for k, v in shards[0].meta.items() if k not in ("frames_sha256", "index_sha256")}
    return _publish(writer, _index_text(store, writer.entries, set(range(len(store)))), meta)


def write_sharded_label_store(
    teacher: torch.nn.Module,
    store: ClipStore,
    out: Path,
    shards: Path,
    meta: dict,
    *,
    rank: int,
    world_size: int,
    barrier: Callable[[], None],
    **options,
) -> LabelStore | None:
    """Under torchrun: each rank labels every world_size-th clip of `store` into its own shard
    in `shards`, then rank 0 merges them into `out` and removes `shards`. The store comes back
    on rank 0 (None elsewhere); every rank must call this, as it waits for all of them."""
    clips = list(range(rank, len(store), world_size))
    write_label_store(teacher, store, shards / f"rank{rank}", meta, clips=clips, **options)
    barrier()
    merged = None
    if rank == 0:
        merged = merge_shards([LabelStore(shards / f"rank{r}") for r in range(world_size)], store, out)
        shutil.rmtree(shards)
    barrier()
    return merged


def find_stores(path: Path) -> list[Path]:
    """The label stores in `path`: the folder itself when it is one split's store, else its
    split folders (a `psl label --out` folder)."""
    path = Path(path)
    if (path / META_FILE).is_file():
        return [path]
    found = sorted(p for p in path.glob("*") if (p / META_FILE).is_file()) if path.is_dir() else []
    if not found:
        raise MissingInput(f"{path} holds no psl label store (no {META_FILE} in it or its folders)")
    return found


def verify_stores(path: Path) -> list[tuple[LabelStore, bool]]:
    """Every store in `path` opened and fully verified; each with whether it had checksums."""
    stores = [LabelStore(p) for p in find_stores(path)]
    return [(store, store.verify()) for store in stores]


def verify_report(path: Path) -> list[str]:
    """`psl label --verify`: a line per store verified (a damaged one raises, naming the file)."""
    lines = []
    for store, checked in verify_stores(path):
        how = (
            "frames and index match their sha256"
            if checked
            else "written before checksums were recorded: layout checked only (label again to add them)"
        )
        lines.append(f"{store.path}: {len(store.ids)} clips, {how}")
    return lines
