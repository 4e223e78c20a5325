"""Reading the CSV files that datasets and stores describe themselves with.

Every CSV reader in psl.data goes through `read_rows`, so that a file that is not UTF-8 text or
not CSV is refused with its name and line instead of a UnicodeDecodeError or csv.Error from
deep inside a loop, and so that a leading byte-order mark (spreadsheets write one) is dropped.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from psl.errors import DataError


def read_rows(path: Path, error: type[Exception] = DataError, **fmtparams) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of every non-blank row of a UTF-8 CSV file, streamed (AudioSet's lists have
    millions); `line` is where the row starts. Problems raise `error` with `path:line:` in front."""
    path = Path(path)
    line = 1
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, **fmtparams)
            for row in reader:
                if row:
                    yield line, row
                line = reader.line_num + 1
    except UnicodeDecodeError:
        raise error(f"{path}:{_line_of_bad_byte(path)}: not UTF-8 text") from None
    except csv.Error as problem:
        raise error(f"{path}:{line}: not readable as CSV: {problem}") from None


def _line_of_bad_byte(path: Path) -> int:
    """The decoder reads in blocks, so its error says nothing about lines; decode again to find it."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as problem:
        return data.count(b"\n", 0, problem.start) + 1
    return 1  # the file was rewritten in between
