"""Files written whole or not at all. A file is written beside its target, flushed to disk and
renamed over it, so a crash, a kill or a full disk leaves the old file or the new one, never
a torn one; and a failed write names the file (a full disk reports ENOSPC from write(),
close() or fsync() without one, and the one-line message must say where it happened)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def naming(path: Path | str | Callable[[], str], doing: str = "") -> Iterator[None]:
    """Attaches `path` (and what was being done, e.g. "while logging ...") to an OSError raised
    in the block that names no file. A callable `path` is asked only then, for names that
    cost a lookup to find."""
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        where = path() if callable(path) else path
        raise OSError(error.errno, f"{error.strerror} {doing}".rstrip(), str(where)) from None


def write_atomic(path: Path, data: bytes | bytearray | memoryview | str) -> None:
    """Replaces `path` with `data` (text is UTF-8) in one rename, after an fsync. The file
    beside it has a name of its own, so that processes writing the same file at once (two
    pipelines finishing one dataset card) never write into each other's; the last rename
    wins. A failure names `path`, the file the user knows, not the hidden one beside it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_serial)}.tmp")
    try:
        with naming(path):
            with open(tmp, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


_serial = itertools.count()  # with the pid, a name no other writer uses at the same time
