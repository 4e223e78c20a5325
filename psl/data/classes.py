"""Class lists: index, identifier (an AudioSet/Freesound mid, or a name) and display name."""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from psl.data.tables import read_rows
from psl.errors import DataError


@dataclass(frozen=True)
class ClassList:
    ids: tuple[str, ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.names):
            raise DataError("a class list needs one name per id")
        if "" in self.ids:
            raise DataError(f"class {self.ids.index('')} has an empty id")
        duplicates = sorted({i for i in self.ids if self.ids.count(i) > 1})
        if duplicates:
            raise DataError(f"duplicate class ids: {', '.join(duplicates[:5])}")

    def __len__(self) -> int:
        return len(self.ids)

    def index(self) -> dict[str, int]:
        """Class id -> index."""
        return {cid: i for i, cid in enumerate(self.ids)}

    def sha256(self) -> str:
        return hashlib.sha256("\n".join(f"{i}\t{n}" for i, n in zip(self.ids, self.names)).encode()).hexdigest()

    def csv_text(self) -> str:
        """`index,id,name` rows, as a store's classes.csv holds them."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["index", "id", "name"])
        for i, (cid, name) in enumerate(zip(self.ids, self.names)):
            writer.writerow([i, cid, name])
        return out.getvalue()

    @classmethod
    def read_csv(cls, path: Path) -> ClassList:
        """Reads `index,id,name` (a store's classes.csv) or `index,mid,display_name` (AudioSet's)."""
        rows = read_rows(path)
        first = next(rows, None)
        if first is None:
            raise DataError(f"{path}: empty class list")
        header = [h.strip() for h in first[1]]
        if header not in (["index", "id", "name"], ["index", "mid", "display_name"]):
            raise DataError(f"{path}: expected the header 'index,id,name' or 'index,mid,display_name', got {first[1]}")
        ids, names = [], []
        for line, row in rows:
            if len(row) != 3:
                raise DataError(f"{path}:{line}: expected 3 columns, got {len(row)}: {row}")
            if row[0].strip() != str(len(ids)):
                raise DataError(f"{path}:{line}: expected index {len(ids)}, got {row[0]!r}")
            ids.append(row[1].strip())
            names.append(row[2].strip())
        return cls.checked(ids, names, path)

    @classmethod
    def checked(cls, ids: list[str], names: list[str], path: Path) -> ClassList:
        """The class list read from `path`, or a DataError that names the file."""
        try:
            return cls(tuple(ids), tuple(names))
        except ValueError as error:
            raise DataError(f"{path}: {error}") from None


def audioset_classes() -> ClassList:
    """The 527 AudioSet classes, shipped with psl (public ontology data)."""
    with resources.as_file(resources.files("psl") / "resources" / "audioset_class_labels_indices.csv") as path:
        return ClassList.read_csv(path)
