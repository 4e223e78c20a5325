"""AudioSet: segment CSVs and a folder of downloaded audio to a store root with the splits
`full` (unbalanced_train), `balanced` and `val` (a deterministic hold-out of
balanced_train) and `eval`."""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

from psl.data.classes import ClassList
from psl.data.ingest import DEFAULT_MAX_SECONDS, DEFAULT_MIN_SECONDS, IngestError, IngestResult, SourceClip, ingest
from psl.data.tables import read_rows

SPLITS_OF_CSV = {
    "unbalanced_train_segments.csv": ("full",),
    "balanced_train_segments.csv": ("balanced", "val"),
    "eval_segments.csv": ("eval",),
}
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a"}


@dataclass
class Segment:
    ytid: str
    start: str
    end: str
    mids: list[str]


def read_segments(path: Path) -> list[Segment]:
    """Parses `# ...` header lines, then `YTID, start_seconds, end_seconds, "mid1,mid2"`."""
    segments = []
    for line, row in read_rows(path, IngestError, skipinitialspace=True):
        if row[0].startswith("#"):
            continue
        if len(row) != 4:
            raise IngestError(
                f"{path}:{line}: expected 4 columns (YTID, start_seconds, end_seconds, positive_labels), "
                f"got {len(row)}: {row}"
            )
        ytid, start, end, mids = (v.strip() for v in row)
        if not ytid:
            raise IngestError(f"{path}:{line}: the YTID is empty")
        try:
            first, last = float(start), float(end)
        except ValueError:
            first = last = math.nan
        # The times become candidate file names (int(start) among them), so they must be finite.
        if not 0 <= first <= last < math.inf:
            raise IngestError(
                f"{path}:{line}: start/end seconds must be numbers with 0 <= start <= end, got {start!r}, {end!r}"
            )
        segments.append(Segment(ytid, start, end, [m.strip() for m in mids.split(",") if m.strip()]))
    return segments


def index_audio(audio_dir: Path) -> dict[str, Path]:
    """File stem -> path for every audio file below `audio_dir`."""
    found = {}
    for folder, _, files in os.walk(audio_dir):
        for name in files:
            stem, ext = os.path.splitext(name)
            if ext.lower() in AUDIO_EXTENSIONS:
                found.setdefault(stem, Path(folder) / name)
    return found


def _candidate_stems(seg: Segment) -> list[str]:
    """The names AudioSet downloaders use: {YTID}_{start}_{end} (with the CSV's or a short
    number format), {YTID}, and the same with a leading Y."""
    numbers = {
        (seg.start, seg.end),
        (f"{float(seg.start):g}", f"{float(seg.end):g}"),
        (f"{float(seg.start):.1f}", f"{float(seg.end):.1f}"),
        (str(int(float(seg.start))), str(int(float(seg.end)))),
    }
    stems = [f"{seg.ytid}_{s}_{e}" for s, e in sorted(numbers)] + [seg.ytid]
    return stems + [f"Y{s}" for s in stems]


def hold_out(ids: list[str], fraction: float, salt: str = "psl-val") -> set[str]:
    """A deterministic subset of round(fraction * len(ids)) ids, chosen by hash."""
    ranked = sorted(ids, key=lambda i: hashlib.sha1(f"{salt}:{i}".encode()).hexdigest())
    return set(ranked[: int(round(fraction * len(ids)))])


def source_clips(segments: list[Segment], classes: ClassList, audio: dict[str, Path]) -> list[SourceClip]:
    index = classes.index()
    clips = []
    for seg in segments:
        path = next((audio[s] for s in _candidate_stems(seg) if s in audio), None)
        unknown = [m for m in seg.mids if m not in index]
        problem = None
        if path is None:
            problem = f"missing: no audio file named {seg.ytid}_{seg.start}_{seg.end}.* or {seg.ytid}.*"
        elif unknown:
            problem = f"label {unknown[0]} is not in the class list"
        elif not seg.mids:
            problem = "no labels"
        source = path.name if path else seg.ytid
        clips.append(SourceClip(seg.ytid, source, path, [index[m] for m in seg.mids if m in index], problem=problem))
    return clips


def ingest_audioset(
    segment_csvs: list[Path],
    labels_csv: Path,
    audio_dir: Path,
    out: Path,
    *,
    val_fraction: float = 0.05,
    workers: int | None = None,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    progress: bool = True,
) -> dict[str, IngestResult]:
    if not Path(labels_csv).is_file():
        raise IngestError(f"class list {labels_csv} does not exist")
    classes = ClassList.read_csv(labels_csv)
    if not Path(audio_dir).is_dir():
        raise IngestError(f"audio folder {audio_dir} does not exist")
    for path in segment_csvs:
        if Path(path).name not in SPLITS_OF_CSV:
            raise IngestError(f"{path}: expected one of {', '.join(SPLITS_OF_CSV)} (the file name picks the split)")
        if not Path(path).is_file():
            raise IngestError(f"segment file {path} does not exist")
    audio = index_audio(Path(audio_dir))
    results = {}
    for path in segment_csvs:
        clips = source_clips(read_segments(Path(path)), classes, audio)
        splits = SPLITS_OF_CSV[Path(path).name]
        if splits == ("balanced", "val"):
            val_ids = hold_out([c.clip_id for c in clips], val_fraction)
            parts = {
                "balanced": [c for c in clips if c.clip_id not in val_ids],
                "val": [c for c in clips if c.clip_id in val_ids],
            }
        else:
            parts = {splits[0]: clips}
        for split, members in parts.items():
            if not members:
                continue
            results[split] = ingest(
                members,
                Path(out) / split,
                classes,
                workers=workers,
                min_seconds=min_seconds,
                max_seconds=max_seconds,
                info=dict(dataset="audioset", split=split),
                progress=progress,
            )
    return results
