"""The packed clip store: one directory per split.

    <split>/audio.i16      every clip's samples back to back: 16 kHz mono int16, little-endian
    <split>/manifest.csv   clip_id, offset, num_samples, labels ("3;17"), source, extra fields
    <split>/classes.csv    index, id, name
    <split>/store.json     format and version, counts, sample rate, manifest hash

A clip, or a crop of it, is one contiguous read. A split becomes visible only when it is
complete: the writer fills `.<split>.partial/` and renames it at the end, and it keeps a
journal there so that an interrupted ingest resumes where it stopped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psl.data.audio import SAMPLE_RATE
from psl.data.classes import ClassList

FORMAT = "psl-clip-store"
VERSION = 1
AUDIO_FILE, MANIFEST_FILE, CLASSES_FILE, META_FILE = "audio.i16", "manifest.csv", "classes.csv", "store.json"
BASE_FIELDS = ("clip_id", "offset", "num_samples", "labels", "source")


def manifest_sha256(ids: Sequence[str], num_samples: Sequence[int], labels: Sequence[Sequence[int]], classes: ClassList) -> str:
    """Content hash of what a store holds: clip ids, lengths, labels and the class list (not where
    the files came from), so the same data ingested elsewhere hashes the same."""
    digest = hashlib.sha256(classes.sha256().encode())
    for cid, n, lab in zip(ids, num_samples, labels):
        digest.update(f"{cid}\t{n}\t{';'.join(map(str, lab))}\n".encode())
    return digest.hexdigest()


def is_store(path: Path) -> bool:
    return (Path(path) / META_FILE).is_file()


class ClipStore:
    """Reads one split. Cheap to pickle: the audio file is opened lazily in each process,
    so the store can be handed to DataLoader workers."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not is_store(self.path):
            partial = self.path.with_name(f".{self.path.name}.partial")
            hint = f" (an unfinished ingest left {partial}: re-run it to finish)" if partial.exists() else ""
            raise FileNotFoundError(f"{self.path} is not a psl clip store: {META_FILE} is missing{hint}")
        self.meta = json.loads((self.path / META_FILE).read_text())
        if self.meta.get("format") != FORMAT or self.meta.get("version") != VERSION:
            raise ValueError(
                f"{self.path / META_FILE}: expected format {FORMAT} version {VERSION}, "
                f"got {self.meta.get('format')} version {self.meta.get('version')}"
            )
        self.classes = ClassList.read_csv(self.path / CLASSES_FILE)
        self._read_manifest()
        self._fd: int | None = None
        self._pid: int | None = None

    def _read_manifest(self) -> None:
        path = self.path / MANIFEST_FILE
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = set(BASE_FIELDS) - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path}: missing columns {sorted(missing)}")
            rows = list(reader)
        self.ids = [r["clip_id"] for r in rows]
        self.offsets = np.array([int(r["offset"]) for r in rows], dtype=np.int64)
        self.num_samples = np.array([int(r["num_samples"]) for r in rows], dtype=np.int64)
        self.labels = [np.array([int(v) for v in r["labels"].split(";") if v], dtype=np.int64) for r in rows]
        self.sources = [r["source"] for r in rows]
        self.extra_fields = [name for name in (reader.fieldnames or ()) if name not in BASE_FIELDS]
        self.extra = {name: [r[name] for r in rows] for name in self.extra_fields}
        self._index = {cid: i for i, cid in enumerate(self.ids)}
        if len(self._index) != len(self.ids):
            raise ValueError(f"{path}: duplicate clip ids")
        if self.manifest_sha256 != manifest_sha256(self.ids, self.num_samples, self.labels, self.classes):
            raise ValueError(f"{path}: the manifest does not match the hash in {META_FILE}; the store was modified")

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
        out = np.empty(end - start, dtype="<i2")
        if end > start:
            got = os.preadv(self._file(), [out], (int(self.offsets[i]) + start) * 2)
            if got != out.nbytes:
                raise OSError(f"{self.path / AUDIO_FILE}: short read for clip {self.ids[i]!r}; the store is truncated")
        return out

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
            self._fd = os.open(self.path / AUDIO_FILE, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fd"] = state["_pid"] = None
        return state

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            os.close(self._fd)


@dataclass
class PendingClip:
    clip_id: str
    labels: list[int]
    source: str
    extra: dict[str, str]


class StoreWriter:
    """Writes one split, resumably.

    Clips are appended to `.<split>.partial/audio.i16` and recorded in a journal line
    after their samples; on restart the journal says which clips are done and the audio
    file is cut back to the end of the last recorded clip. `finish()` writes the manifest
    and metadata and renames the directory into place.
    """

    JOURNAL = "journal.jsonl"

    def __init__(self, path: str | Path, classes: ClassList, extra_fields: Sequence[str] = ()) -> None:
        self.path = Path(path)
        if is_store(self.path):
            raise FileExistsError(f"{self.path} already holds a finished store")
        self.classes = classes
        self.extra_fields = tuple(extra_fields)
        self.partial = self.path.with_name(f".{self.path.name}.partial")
        self.partial.mkdir(parents=True, exist_ok=True)
        self.clips: list[PendingClip] = []
        self.num_samples: list[int] = []
        self._recover()
        self._ids = {c.clip_id for c in self.clips}
        self._audio = open(self.partial / AUDIO_FILE, "r+b" if (self.partial / AUDIO_FILE).exists() else "wb")
        self._audio.seek(self._end * 2)
        self._journal = open(self.partial / self.JOURNAL, "a")

    def _recover(self) -> None:
        journal = self.partial / self.JOURNAL
        self._end = 0
        if journal.exists():
            lines = journal.read_text().split("\n")
            complete = lines[:-1]  # the text after the last newline is an interrupted write
            for line in complete:
                entry = json.loads(line)
                self.clips.append(PendingClip(entry["clip_id"], entry["labels"], entry["source"], entry["extra"]))
                self.num_samples.append(entry["num_samples"])
            self._end = sum(self.num_samples)
            journal.write_text("".join(f"{line}\n" for line in complete))
        audio = self.partial / AUDIO_FILE
        if audio.exists() and audio.stat().st_size > self._end * 2:
            os.truncate(audio, self._end * 2)
        elif audio.exists() and audio.stat().st_size < self._end * 2:
            raise OSError(f"{audio} is shorter than its journal says; delete {self.partial} and ingest again")

    @property
    def done_ids(self) -> set[str]:
        return set(self._ids)

    def append(self, clip_id: str, samples: np.ndarray, labels: Iterable[int], source: str, extra: dict | None = None) -> None:
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise TypeError("the store holds 1-d int16 samples")
        if clip_id in self._ids:
            raise ValueError(f"clip {clip_id!r} is already in {self.path}")
        clip = PendingClip(clip_id, sorted(int(v) for v in labels), source, {k: str(v) for k, v in (extra or {}).items()})
        unknown = set(clip.extra) ^ set(self.extra_fields)
        if unknown:
            raise ValueError(f"clip {clip_id!r}: extra fields {sorted(clip.extra)} do not match {list(self.extra_fields)}")
        self._audio.write(samples.astype("<i2", copy=False).tobytes())
        self._audio.flush()
        entry = dict(clip_id=clip.clip_id, labels=clip.labels, source=clip.source, extra=clip.extra, num_samples=len(samples))
        self._journal.write(json.dumps(entry) + "\n")
        self._journal.flush()
        self.clips.append(clip)
        self.num_samples.append(len(samples))
        self._ids.add(clip_id)

    def finish(self, info: dict | None = None, attachments: dict[str, str] | None = None) -> ClipStore:
        """Writes manifest, classes, metadata and `attachments` (file name -> text, e.g. strong
        labels), then makes the split visible in one rename."""
        self._audio.close()
        self._journal.close()
        offsets = np.concatenate([[0], np.cumsum(self.num_samples, dtype=np.int64)[:-1]]) if self.clips else []
        with open(self.partial / MANIFEST_FILE, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*BASE_FIELDS, *self.extra_fields])
            for clip, offset, n in zip(self.clips, offsets, self.num_samples):
                extra = [clip.extra[name] for name in self.extra_fields]
                writer.writerow([clip.clip_id, int(offset), n, ";".join(map(str, clip.labels)), clip.source, *extra])
        self.classes.write_csv(self.partial / CLASSES_FILE)
        ids = [c.clip_id for c in self.clips]
        meta = dict(
            format=FORMAT,
            version=VERSION,
            sample_rate=SAMPLE_RATE,
            num_clips=len(ids),
            num_samples=int(sum(self.num_samples)),
            num_classes=len(self.classes),
            manifest_sha256=manifest_sha256(ids, self.num_samples, [c.labels for c in self.clips], self.classes),
            **(info or {}),
        )
        (self.partial / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        for name, text in (attachments or {}).items():
            (self.partial / name).write_text(text)
        for name in (AUDIO_FILE, MANIFEST_FILE, CLASSES_FILE, META_FILE, *(attachments or {})):
            with open(self.partial / name, "rb") as f:
                os.fsync(f.fileno())
        (self.partial / self.JOURNAL).unlink()
        os.rename(self.partial, self.path)
        return ClipStore(self.path)

    def close(self) -> None:
        """Leaves the partial split in place for a later run to resume."""
        self._audio.close()
        self._journal.close()
