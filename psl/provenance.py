"""What produced a result: a hash of psl's source files and its built extension, and the
sha256 of the files (checkpoints, label stores, the release) that results are traced to.

`psl.__version__` does not change between commits, so a pipeline that keyed finished stages
on it would reuse results of code that has since been fixed. The identity below changes
whenever any file of the installed package does (Python sources, resources, `psl._C`).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# Compiled bytecode and editor droppings are not code of their own.
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", ".tmp")


def tree_identity(root: Path) -> str:
    """A sha256 (first 16 hex digits) over the relative paths and contents of `root`'s files."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file() and p.suffix not in IGNORED_SUFFIXES):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (hex), read in 1-MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def code_identity() -> str:
    """This process's psl: its package folder's identity, computed once."""
    return tree_identity(PACKAGE)
