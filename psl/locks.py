"""Exclusive locks on output folders, so that two psl processes never write the same store,
checkpoint folder or pipeline at once.

A lock is an advisory `flock` on a small file; the kernel releases it when the holder
exits, even on SIGKILL, so a killed run never leaves a stale lock behind. Forked children
(decoding pools, DataLoader workers) close their inherited copy at once, so that one left
running by a killed parent cannot keep the lock. The file holds a line about the holder
(pid, host, command, start time) for the refusal message.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from psl.errors import Busy

_held: set[int] = set()  # descriptors of the locks this process holds


def _drop_inherited() -> None:
    for fd in _held:
        os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_drop_inherited)


@contextmanager
def _lock_file(lock_file: str | Path) -> Iterator[int]:
    """The open descriptor of `lock_file` (created if needed), released with it on exit."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        yield fd
    finally:
        _held.discard(fd)
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def exclusive(lock_file: str | Path, what: str) -> Iterator[None]:
    """Holds an exclusive lock on `lock_file` (created if needed) for the block, or raises
    `Busy` at once if another process holds it. `what` names the guarded output in errors."""
    with _lock_file(lock_file) as fd:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 1024, 0).decode(errors="replace").strip() or "another process"
            raise Busy(
                f"{what} is being written by {holder}; wait for it to finish (or stop it), "
                "then run this again: it will continue from what was written"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_line().encode(), 0)
        _held.add(fd)
        yield


@contextmanager
def taking_turns(lock_file: str | Path) -> Iterator[None]:
    """Holds an exclusive lock on `lock_file` for the block, waiting while another process
    holds it: for short steps that concurrent processes must take one at a time."""
    with _lock_file(lock_file) as fd:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _held.add(fd)
        yield


def _holder_line() -> str:
    command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200]
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"pid {os.getpid()} on {socket.gethostname()} (`{command}`, since {started})\n"
