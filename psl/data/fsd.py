"""The Freesound datasets: FSD50K (200 classes, multi-label, train/val/eval) and
FSDKaggle2018 (41 classes, single-label, train/val/eval, `manually_verified` kept).

A clip listed twice lands in one split: eval, then val, then train (see psl.data.ingest). A row
naming a file outside its audio folder (`../`, an absolute name, or a symbolic link in the folder
that leads out of it) is skipped unread.
"""

from __future__ import annotations

from pathlib import Path

from psl.data.audioset import hold_out
from psl.data.classes import ClassList
from psl.data.ingest import IngestError, IngestResult, SourceClip, ingest_splits, input_hashes, link_problem
from psl.data.tables import read_rows


def read_table(path: Path, columns: list[str]) -> list[tuple[int, dict[str, str]]]:
    """(line, row) of a CSV with a header, checked to hold `columns` and as many fields per row."""
    if not path.is_file():
        raise IngestError(f"expected the file {path}")
    rows = read_rows(path, IngestError)
    header = next(rows, (1, []))[1]
    missing = [c for c in columns if c not in header]
    if missing:
        raise IngestError(f"{path}: expected the columns {', '.join(columns)}; missing {', '.join(missing)}")
    table = []
    for line, row in rows:
        if len(row) != len(header):
            raise IngestError(f"{path}:{line}: expected {len(header)} fields ({','.join(header)}), got {len(row)}")
        table.append((line, dict(zip(header, row))))
    return table


def _clip(
    fname: str, audio_dir: Path, file_name: str, labels: list[str], index: dict[str, int], extra=None
) -> SourceClip:
    path = audio_dir / file_name
    unknown = [label for label in labels if label not in index]
    problem = None
    if not fname:
        problem = "no file name"
    elif Path(file_name).is_absolute() or ".." in Path(file_name).parts:
        # The metadata only names files in the dataset's audio folder; anything else is never read.
        problem = f"path escapes the dataset folder: {file_name}"
    elif (outside := link_problem(path, audio_dir, file_name)) is not None:
        problem = outside
    elif not _is_file(path):
        problem = f"missing: {path} does not exist"
    elif unknown:
        problem = f"label {unknown[0]} is not in the class list"
    elif not labels:
        problem = "no labels"
    return SourceClip(fname, file_name, path, [index[x] for x in labels if x in index], extra or {}, problem)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a name too long for the file system
        return False


def fsd50k_classes(root: Path) -> ClassList:
    path = Path(root) / "FSD50K.ground_truth" / "vocabulary.csv"
    if not path.is_file():
        raise IngestError(f"expected the file {path} (headerless index,label,mid)")
    rows = list(read_rows(path, IngestError))
    for index, (line, row) in enumerate(rows):
        if len(row) != 3 or row[0] != str(index):
            raise IngestError(f"{path}:{line}: expected 'index,label,mid' with index {index}, got {row}")
    return ClassList.checked([r[2] for _, r in rows], [r[1] for _, r in rows], path)


def ingest_fsd50k(root: Path, out: Path, **options) -> dict[str, IngestResult]:
    root = Path(root)
    classes = fsd50k_classes(root)
    index = classes.index()
    truth = root / "FSD50K.ground_truth"
    tables = [truth / "dev.csv", truth / "eval.csv"]
    dev = read_table(tables[0], ["fname", "labels", "mids", "split"])
    evaluation = read_table(tables[1], ["fname", "labels", "mids"])
    parts: dict[str, list[SourceClip]] = {"train": [], "val": [], "eval": []}
    for line, row in dev:
        if row["split"] not in ("train", "val"):
            raise IngestError(f"{tables[0]}:{line}: split must be train or val, got {row['split']!r}")
        mids = [m for m in row["mids"].split(",") if m]
        parts[row["split"]].append(_clip(row["fname"], root / "FSD50K.dev_audio", f"{row['fname']}.wav", mids, index))
    for _, row in evaluation:
        mids = [m for m in row["mids"].split(",") if m]
        parts["eval"].append(_clip(row["fname"], root / "FSD50K.eval_audio", f"{row['fname']}.wav", mids, index))
    _check_listed(parts, tables)
    inputs = input_hashes([truth / "vocabulary.csv", *tables])
    return ingest_splits(parts, Path(out), classes, inputs=inputs, options={}, dataset="fsd50k", **options)


def ingest_fsdkaggle2018(root: Path, out: Path, *, val_fraction: float = 0.1, **options) -> dict[str, IngestResult]:
    root = Path(root)
    meta = root / "FSDKaggle2018.meta"
    tables = [meta / "train_post_competition.csv", meta / "test_post_competition_scoring_clips.csv"]
    train = [r for _, r in read_table(tables[0], ["fname", "label", "manually_verified"])]
    test = [r for _, r in read_table(tables[1], ["fname", "label"])]
    # An empty label is a clip without one (skipped), not a class.
    names = tuple(sorted({r["label"] for r in train} - {""}))
    classes = ClassList(names, names)
    index = classes.index()

    def clip(row: dict[str, str], audio_dir: str, verified: str) -> SourceClip:
        stem = Path(row["fname"]).stem
        labels = [row["label"]] if row["label"] else []
        return _clip(stem, root / audio_dir, row["fname"], labels, index, {"manually_verified": verified})

    train_clips = [clip(r, "FSDKaggle2018.audio_train", r["manually_verified"]) for r in train]
    val_ids = hold_out([c.clip_id for c in train_clips], val_fraction)
    parts = {
        "train": [c for c in train_clips if c.clip_id not in val_ids],
        "val": [c for c in train_clips if c.clip_id in val_ids],
        # The scoring clips of the test set were all verified by hand.
        "eval": [clip(r, "FSDKaggle2018.audio_test", "1") for r in test],
    }
    _check_listed(parts, tables)
    return ingest_splits(
        parts,
        Path(out),
        classes,
        inputs=input_hashes(tables),
        options={"val_fraction": val_fraction},
        dataset="fsdkaggle2018",
        extra_fields=("manually_verified",),
        **options,
    )


def _check_listed(parts: dict[str, list[SourceClip]], tables: list[Path]) -> None:
    if not any(parts.values()):
        raise IngestError(f"no clips are listed in {' or '.join(map(str, tables))}")
