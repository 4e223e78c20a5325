"""Append-only ragged arrays on disk, written resumably and published atomically.

Both the clip store (int16 samples per clip) and the pseudo-label store (float16 frame
probabilities per clip) are "one variable-length block of rows per id, back to back in
one file". This module owns that: the writer fills `.<name>.partial/`, appends each
block to the data file *before* recording it in a journal line, and on restart cuts the
data file back to the end of the last recorded block; `publish()` writes the final files
and renames the folder into place, so a half-written result is never taken as complete.
A writer holds a lock on its partial folder: a second writer of the same output is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from psl.files import write_atomic
from psl.locks import exclusive

JOURNAL, LOCK = "journal.jsonl", "writer.lock"


def partial_dir(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def recorded_blocks(path: Path) -> int:
    """How many blocks an interrupted writer of `path` recorded (what a new writer keeps)."""
    journal = partial_dir(Path(path)) / JOURNAL
    return journal.read_text().count("\n") if journal.exists() else 0


class RaggedWriter:
    """Appends blocks `[n, *row_shape]` of `dtype` to `<partial>/<data_file>`, resumably."""

    def __init__(self, path: str | Path, data_file: str, dtype: np.dtype, row_shape: tuple[int, ...] = ()) -> None:
        self.path = Path(path)
        self.partial = partial_dir(self.path)
        self.partial.mkdir(parents=True, exist_ok=True)
        self._lock = ExitStack()
        self._lock.enter_context(exclusive(self.partial / LOCK, str(self.path)))
        self.data_file = data_file
        self.dtype = np.dtype(dtype)  # little-endian types (the stores' files are little-endian)
        self.row_shape = tuple(row_shape)
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))
        self.entries: list[dict] = []  # one per block: id, rows and the caller's fields
        with self._lock.pop_all() as held:  # kept only if the files open
            self._recover()
            self._ids = {e["id"] for e in self.entries}
            data = self.partial / data_file
            self._data = open(data, "r+b" if data.exists() else "wb")
            self._data.seek(self.rows * self.row_bytes)
            self._journal = open(self.partial / JOURNAL, "a")
            self._lock = held.pop_all()

    @property
    def rows(self) -> int:
        return sum(e["rows"] for e in self.entries)

    def _recover(self) -> None:
        journal = self.partial / JOURNAL
        if journal.exists():
            lines = journal.read_text().split("\n")
            complete, torn = lines[:-1], lines[-1]  # the text after the last newline: an interrupted write
            self.entries = [json.loads(line) for line in complete]
            if torn:  # cut off in one rename: a crash or a full disk now must not lose the journal
                write_atomic(journal, "".join(f"{line}\n" for line in complete))
        data = self.partial / self.data_file
        end = self.rows * self.row_bytes
        if data.exists():
            size = data.stat().st_size
            if size < end:
                raise OSError(f"{data} is shorter than its journal says; delete {self.partial} and start again")
            if size > end:
                os.truncate(data, end)

    def done(self, item_id: str) -> bool:
        return item_id in self._ids

    @property
    def done_ids(self) -> set[str]:
        return set(self._ids)

    def append(self, item_id: str, block: np.ndarray, **fields) -> None:
        if item_id in self._ids:
            raise ValueError(f"{item_id!r} is already in {self.path}")
        if block.shape[1:] != self.row_shape:
            raise ValueError(f"{item_id!r}: rows of shape {block.shape[1:]}, expected {self.row_shape}")
        entry = {"id": item_id, "rows": int(block.shape[0]), **fields}
        try:
            self._data.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
            self._data.flush()
            self._journal.write(json.dumps(entry) + "\n")
            self._journal.flush()
        except OSError as error:  # e.g. a full disk: name the folder; what was recorded stays
            raise OSError(error.errno, f"{error.strerror} while writing {item_id!r}", str(self.partial)) from None
        self.entries.append(entry)
        self._ids.add(item_id)

    def close(self) -> None:
        """Leaves the partial folder for a later run to resume."""
        self._data.close()
        self._journal.close()
        self._lock.close()

    @contextmanager
    def closing_on_error(self) -> Iterator[None]:
        """Around the appends: an error (or an interrupt) closes the files, keeping what was
        appended for the next run to resume from."""
        try:
            yield
        except BaseException:
            self.close()
            raise

    def publish(self, files: dict[str, str]) -> Path:
        """Writes `files` (name -> text) beside the data, syncs, and renames into place."""
        with self._lock:  # released once the result is in place
            self._data.close()
            self._journal.close()
            for name, text in files.items():
                (self.partial / name).write_text(text)
            for name in (self.data_file, *files):
                with open(self.partial / name, "rb") as f:
                    os.fsync(f.fileno())
            (self.partial / JOURNAL).unlink()
            os.rename(self.partial, self.path)
            (self.path / LOCK).unlink()
        return self.path


def read_block(
    fd: int, offset_rows: int, rows: int, dtype: np.dtype, row_shape: tuple[int, ...], where: str
) -> np.ndarray:
    """Rows [offset_rows, offset_rows + rows) of a ragged data file, in one read."""
    out = np.empty((rows, *row_shape), dtype=dtype)
    if rows:
        got = os.preadv(fd, [out], offset_rows * out.itemsize * int(np.prod(row_shape, dtype=np.int64)))
        if got != out.nbytes:
            raise OSError(f"{where}: short read; the file is truncated")
    return out
