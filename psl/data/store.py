"""The packed clip store: one directory per split.

    <split>/audio.i16      every clip's samples back to back: 16 kHz mono int16, little-endian
    <split>/manifest.csv   clip_id, offset, num_samples, labels ("3;17"), source, extra fields
    <split>/classes.csv    index, id, name
    <split>/store.json     format and version, counts, sample rate, manifest hash, and for an
                           ingest `built_from`: the inputs' sha256, the options, a clip-list hash
    <split>/strong.csv     optional strong truth: clip_id, onset, offset (seconds from the clip's
                           start), class_index, class_id, snr_db (nan where unknown), in_weak_label

A clip, or a crop of it, is one contiguous read. A split becomes visible only when it is
complete, and an interrupted ingest resumes where it stopped (psl.data.ragged).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from psl.data.classes import ClassList
from psl.data.ragged import RaggedWriter, partial_dir, read_block
from psl.data.tables import read_rows
from psl.errors import DataError, MissingInput, OutputExists
from psl.files import naming, write_atomic

FORMAT = "psl-clip-store"
VERSION = 1
AUDIO_FILE, MANIFEST_FILE, CLASSES_FILE, META_FILE = "audio.i16", "manifest.csv", "classes.csv", "store.json"
STRONG_FILE = "strong.csv"
STRONG_FIELDS = ("clip_id", "onset", "offset", "class_index", "class_id", "snr_db", "in_weak_label")
BUILD_FILE = "built_from.json"  # in an unfinished split: what the interrupted ingest was building
BASE_FIELDS = ("clip_id", "offset", "num_samples", "labels", "source")
SAMPLE_DTYPE = np.dtype("<i2")
SAMPLE_RATE = 16000  # every store holds 16 kHz mono int16


def manifest_sha256(
    ids: Sequence[str], num_samples: Sequence[int], labels: Sequence[Sequence[int]], classes: ClassList
) -> str:
    """Content hash of what a store holds: clip ids, lengths, labels and the class list (not where
    the files came from), so the same data ingested elsewhere hashes the same."""
    digest = hashlib.sha256(classes.sha256().encode())
    for cid, n, lab in zip(ids, num_samples, labels):
        digest.update(f"{cid}\t{n}\t{';'.join(map(str, lab))}\n".encode())
    return digest.hexdigest()


def strong_csv_text(rows: Iterable[Sequence]) -> str:
    """strong.csv: one row per event, in the order of STRONG_FIELDS."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(STRONG_FIELDS)
    writer.writerows(rows)
    return out.getvalue()


def started_from(path: Path) -> dict | None:
    """What the run that began the unfinished split at `path` recorded with `record_start`; None
    for none (or one begun by a psl that recorded nothing)."""
    record = partial_dir(Path(path)) / BUILD_FILE
    try:
        recorded = json.loads(record.read_text()) if record.exists() else None
    except ValueError:  # torn by a kill: the same as nothing recorded
        return None
    return recorded if isinstance(recorded, dict) else None


def is_store(path: Path) -> bool:
    return (Path(path) / META_FILE).is_file()


# What store.json must hold, and of which type, for a store to be read.
META_TYPES = {"sample_rate": int, "num_clips": int, "num_samples": int, "manifest_sha256": str}


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as error:  # not UTF-8, not JSON, or nested beyond reason
        raise DataError(f"{path}: not a JSON object ({type(error).__name__}: {error})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DataError(
            f"{path}: expected format {FORMAT} version {VERSION}, got {meta.get('format')} version {meta.get('version')}"
        )
    for key, kind in META_TYPES.items():
        if type(meta.get(key)) is not kind:
            raise DataError(f"{path}: {key} must be a {kind.__name__}, got {meta.get(key)!r}")
    if meta["sample_rate"] != SAMPLE_RATE:
        raise DataError(f"{path}: clip stores hold {SAMPLE_RATE}-Hz audio, got sample_rate {meta['sample_rate']}")
    return meta


class ClipStore:
    """Reads one split. Cheap to pickle: the audio file is opened lazily in each process,
    so the store can be handed to DataLoader workers."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not is_store(self.path):
            partial = partial_dir(self.path)
            hint = f" (an unfinished ingest left {partial}: re-run it to finish)" if partial.exists() else ""
            raise MissingInput(f"{self.path} is not a psl clip store: {META_FILE} is missing{hint}")
        self.meta = _read_meta(self.path / META_FILE)
        self.classes = ClassList.read_csv(self.path / CLASSES_FILE)
        self._read_manifest()
        self._audio_file = str(self.path / AUDIO_FILE)  # built once: read() is called per item
        self._fd: int | None = None
        self._pid: int | None = None

    def _read_manifest(self) -> None:
        """Reads manifest.csv and checks it against itself (clips back to back, labels in the class
        list, ids unique), the audio file's size and store.json, so that a damaged store is
        refused here, naming the file, and not in a DataLoader worker halfway through training."""
        path = self.path / MANIFEST_FILE
        rows = read_rows(path)
        header = next(rows, (1, []))[1]
        missing = set(BASE_FIELDS) - set(header)
        if missing:
            raise DataError(f"{path}: missing columns {sorted(missing)}")
        if len(set(header)) != len(header):
            raise DataError(f"{path}: repeated column names in {header}")
        self.ids, self.sources, offsets, num_samples, self.labels = [], [], [], [], []
        self.extra_fields = [name for name in header if name not in BASE_FIELDS]
        self.extra = {name: [] for name in self.extra_fields}
        self._index = {}
        end = 0  # samples so far: where the next clip must start
        for line, row in rows:
            if len(row) != len(header):
                raise DataError(f"{path}:{line}: expected {len(header)} fields, got {len(row)}")
            r = dict(zip(header, row))
            try:
                offset, n = int(r["offset"]), int(r["num_samples"])
                labels = [int(v) for v in r["labels"].split(";") if v]
            except ValueError:
                raise DataError(
                    f"{path}:{line}: offset, num_samples and labels must be integers, "
                    f"got {r['offset']!r}, {r['num_samples']!r}, {r['labels']!r}"
                ) from None
            if offset != end:
                raise DataError(f"{path}:{line}: clip {r['clip_id']!r} should start at sample {end}, got {offset}")
            if n < 0:
                raise DataError(f"{path}:{line}: clip {r['clip_id']!r} has a negative length {n}")
            if not all(0 <= v < len(self.classes) for v in labels):
                raise DataError(f"{path}:{line}: labels {r['labels']!r} outside the {len(self.classes)} classes")
            if self._index.setdefault(r["clip_id"], len(self.ids)) != len(self.ids):
                raise DataError(f"{path}:{line}: duplicate clip id {r['clip_id']!r}")
            self.ids.append(r["clip_id"])
            self.sources.append(r["source"])
            offsets.append(offset)
            num_samples.append(n)
            self.labels.append(np.array(labels, dtype=np.int64))
            for name in self.extra_fields:
                self.extra[name].append(r[name])
            end += n
        audio = self.path / AUDIO_FILE
        if audio.stat().st_size != end * SAMPLE_DTYPE.itemsize:
            raise DataError(f"{audio}: holds {audio.stat().st_size} bytes, the manifest says {end} samples")
        if (self.meta["num_clips"], self.meta["num_samples"]) != (len(self.ids), end):
            raise DataError(f"{self.path / META_FILE}: the counts do not match {path}; the store was modified")
        self.offsets = np.array(offsets, dtype=np.int64)
        self.num_samples = np.array(num_samples, dtype=np.int64)
        if self.manifest_sha256 != manifest_sha256(self.ids, self.num_samples, self.labels, self.classes):
            raise DataError(f"{path}: the manifest does not match the hash in {META_FILE}; the store was modified")

    @property
    def manifest_sha256(self) -> str:
        return self.meta["manifest_sha256"]

    @property
    def sample_rate(self) -> int:
        return self.meta["sample_rate"]

    def __len__(self) -> int:
        return len(self.ids)

    def index_of(self, clip_id: str) -> int:
        try:
            return self._index[clip_id]
        except KeyError:
            raise KeyError(f"clip {clip_id!r} is not in {self.path}") from None

    def duration(self, i: int) -> float:
        return float(self.num_samples[i]) / self.sample_rate

    def read(self, i: int, start: int = 0, end: int | None = None) -> np.ndarray:
        """Samples [start, end) of clip i as int16, in one read."""
        n = int(self.num_samples[i])
        end = n if end is None else end
        if not 0 <= start <= end <= n:
            raise IndexError(f"crop [{start}, {end}) is outside clip {self.ids[i]!r} of {n} samples")
        return read_block(self._file(), int(self.offsets[i]) + start, end - start, SAMPLE_DTYPE, (), self._audio_file)

    def label_matrix(self) -> np.ndarray:
        """[clips, classes] multi-hot float32 labels."""
        out = np.zeros((len(self), len(self.classes)), dtype=np.float32)
        for i, lab in enumerate(self.labels):
            out[i, lab] = 1.0
        return out

    def _file(self) -> int:
        # One descriptor per process: a descriptor inherited through fork shares nothing
        # harmful for pread, but reopening keeps workers independent of the parent.
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self._audio_file, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fd"] = state["_pid"] = None
        return state

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)


class StoreWriter:
    """Writes one split, resumably (see psl.data.ragged): clips are appended as they come,
    and `finish()` writes the manifest and metadata and makes the split visible at once."""

    def __init__(self, path: str | Path, classes: ClassList, extra_fields: Sequence[str] = ()) -> None:
        self.path = Path(path)
        if is_store(self.path):
            raise OutputExists(f"{self.path} already holds a finished store")
        self.classes = classes
        self.extra_fields = tuple(extra_fields)
        with naming(partial_dir(self.path)):
            self._ragged = RaggedWriter(self.path, AUDIO_FILE, SAMPLE_DTYPE)

    def record_start(self, built_from: dict) -> None:
        """Records what this split is built from, so that a resumed run can check it builds the same."""
        write_atomic(self._ragged.partial / BUILD_FILE, json.dumps(built_from, indent=2) + "\n")

    def discard(self) -> None:
        """Deletes everything appended so far (under the writer's lock) and closes."""
        shutil.rmtree(self._ragged.partial)
        self._ragged.close()

    @property
    def done_ids(self) -> set[str]:
        return self._ragged.done_ids

    def __len__(self) -> int:
        return len(self._ragged.entries)

    def append(
        self, clip_id: str, samples: np.ndarray, labels: Iterable[int], source: str, extra: dict | None = None
    ) -> None:
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise TypeError("the store holds 1-d int16 samples")
        extra = {k: str(v) for k, v in (extra or {}).items()}
        if set(extra) != set(self.extra_fields):
            raise ValueError(f"clip {clip_id!r}: extra fields {sorted(extra)} do not match {list(self.extra_fields)}")
        self._ragged.append(clip_id, samples, labels=sorted(int(v) for v in labels), source=source, extra=extra)

    def finish(self, info: dict | None = None, attachments: dict[str, str] | None = None) -> ClipStore:
        """Writes manifest, classes, metadata and `attachments` (file name -> text, e.g. strong
        labels), then makes the split visible in one rename."""
        entries = self._ragged.entries
        manifest = io.StringIO()
        writer = csv.writer(manifest)
        writer.writerow([*BASE_FIELDS, *self.extra_fields])
        offset = 0
        for e in entries:
            writer.writerow(
                [
                    e["id"],
                    offset,
                    e["rows"],
                    ";".join(map(str, e["labels"])),
                    e["source"],
                    *(e["extra"][name] for name in self.extra_fields),
                ]
            )
            offset += e["rows"]
        meta = dict(
            format=FORMAT,
            version=VERSION,
            sample_rate=SAMPLE_RATE,
            num_clips=len(entries),
            num_samples=offset,
            num_classes=len(self.classes),
            manifest_sha256=manifest_sha256(
                [e["id"] for e in entries], [e["rows"] for e in entries], [e["labels"] for e in entries], self.classes
            ),
            **(info or {}),
        )
        files = {
            MANIFEST_FILE: manifest.getvalue(),
            CLASSES_FILE: self.classes.csv_text(),
            META_FILE: json.dumps(meta, indent=2) + "\n",
            **(attachments or {}),
        }
        with naming(self._ragged.partial):
            path = self._ragged.publish(files)
        (path / BUILD_FILE).unlink(missing_ok=True)  # store.json holds it now
        return ClipStore(path)

    def close(self) -> None:
        """Leaves the partial split in place for a later run to resume."""
        self._ragged.close()

    def closing_on_error(self):
        return self._ragged.closing_on_error()
