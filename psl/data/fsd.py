"""The Freesound datasets: FSD50K (200 classes, multi-label, train/val/eval) and
FSDKaggle2018 (41 classes, single-label, train/val/eval, `manually_verified` kept)."""

from __future__ import annotations

import csv
from pathlib import Path

from psl.data.audioset import hold_out
from psl.data.classes import ClassList
from psl.data.ingest import IngestError, IngestResult, SourceClip, ingest


def read_table(path: Path, columns: list[str]) -> list[dict[str, str]]:
    """Rows of a CSV with a header, checked to hold `columns`."""
    if not path.is_file():
        raise IngestError(f"expected the file {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise IngestError(f"{path}: expected the columns {', '.join(columns)}; missing {', '.join(missing)}")
        return list(reader)


def _clip(
    fname: str, audio_dir: Path, file_name: str, labels: list[str], index: dict[str, int], extra=None
) -> SourceClip:
    path = audio_dir / file_name
    unknown = [label for label in labels if label not in index]
    problem = None
    if not path.is_file():
        problem = f"missing: {path} does not exist"
    elif unknown:
        problem = f"label {unknown[0]} is not in the class list"
    elif not labels:
        problem = "no labels"
    return SourceClip(fname, file_name, path, [index[x] for x in labels if x in index], extra or {}, problem)


def fsd50k_classes(root: Path) -> ClassList:
    path = Path(root) / "FSD50K.ground_truth" / "vocabulary.csv"
    if not path.is_file():
        raise IngestError(f"expected the file {path} (headerless index,label,mid)")
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    for line, row in enumerate(rows, start=1):
        if len(row) != 3 or row[0] != str(line - 1):
            raise IngestError(f"{path}:{line}: expected 'index,label,mid' with index {line - 1}, got {row}")
    return ClassList(tuple(r[2] for r in rows), tuple(r[1] for r in rows))


def ingest_fsd50k(root: Path, out: Path, **options) -> dict[str, IngestResult]:
    root = Path(root)
    classes = fsd50k_classes(root)
    index = classes.index()
    truth = root / "FSD50K.ground_truth"
    dev = read_table(truth / "dev.csv", ["fname", "labels", "mids", "split"])
    evaluation = read_table(truth / "eval.csv", ["fname", "labels", "mids"])
    parts: dict[str, list[SourceClip]] = {"train": [], "val": [], "eval": []}
    for line, row in enumerate(dev, start=2):
        if row["split"] not in ("train", "val"):
            raise IngestError(f"{truth / 'dev.csv'}:{line}: split must be train or val, got {row['split']!r}")
        mids = [m for m in row["mids"].split(",") if m]
        parts[row["split"]].append(_clip(row["fname"], root / "FSD50K.dev_audio", f"{row['fname']}.wav", mids, index))
    for row in evaluation:
        mids = [m for m in row["mids"].split(",") if m]
        parts["eval"].append(_clip(row["fname"], root / "FSD50K.eval_audio", f"{row['fname']}.wav", mids, index))
    return _ingest_parts(parts, Path(out), classes, "fsd50k", (), options)


def ingest_fsdkaggle2018(root: Path, out: Path, *, val_fraction: float = 0.1, **options) -> dict[str, IngestResult]:
    root = Path(root)
    meta = root / "FSDKaggle2018.meta"
    train = read_table(meta / "train_post_competition.csv", ["fname", "label", "manually_verified"])
    test = read_table(meta / "test_post_competition_scoring_clips.csv", ["fname", "label"])
    names = tuple(sorted({r["label"] for r in train}))
    classes = ClassList(names, names)
    index = classes.index()

    def clip(row: dict[str, str], audio_dir: str, verified: str) -> SourceClip:
        stem = Path(row["fname"]).stem
        return _clip(stem, root / audio_dir, row["fname"], [row["label"]], index, {"manually_verified": verified})

    train_clips = [clip(r, "FSDKaggle2018.audio_train", r["manually_verified"]) for r in train]
    val_ids = hold_out([c.clip_id for c in train_clips], val_fraction)
    parts = {
        "train": [c for c in train_clips if c.clip_id not in val_ids],
        "val": [c for c in train_clips if c.clip_id in val_ids],
        # The scoring clips of the test set were all verified by hand.
        "eval": [clip(r, "FSDKaggle2018.audio_test", "1") for r in test],
    }
    return _ingest_parts(parts, Path(out), classes, "fsdkaggle2018", ("manually_verified",), options)


def _ingest_parts(parts, out: Path, classes: ClassList, dataset: str, extra_fields, options) -> dict[str, IngestResult]:
    results = {}
    for split, clips in parts.items():
        if clips:
            results[split] = ingest(
                clips,
                out / split,
                classes,
                extra_fields=extra_fields,
                info=dict(dataset=dataset, split=split),
                **options,
            )
    return results
