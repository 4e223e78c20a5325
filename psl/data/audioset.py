"""AudioSet: segment CSVs and a folder of downloaded audio to a store root with the splits
`full` (unbalanced_train), `balanced` and `val` (a deterministic hold-out of
balanced_train) and `eval`.

A YTID listed in two segment files lands in one split: eval, then val, then balanced, then full
(see psl.data.ingest); the other listings are skipped and reported. An audio file is found by its
name anywhere below the audio folder; a clip that two files fit (in two subfolders, or as
`{YTID}.wav` and `{YTID}_30.000_40.000.flac`) is skipped as ambiguous, and a symbolic link that
leads out of the audio folder is skipped unread.

Strong labels (`strong`: the published `audioset_{train,eval}_strong.tsv`, rows of
`segment_id  start_time_seconds  end_time_seconds  label` with segment ids `{YTID}_{start_ms}`)
are attached to the clips of the listed segments they name, as each split's strong.csv (the form
the synthetic benchmark keeps its truth in; psl.data.store), for the missing-label analysis.
Rows whose segment no ingested list names, or whose label is not in the class list, are counted
and listed in `<out>/strong.skipped.csv`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from psl.data.classes import ClassList
from psl.data.ingest import (
    DEFAULT_MAX_SECONDS,
    DEFAULT_MIN_SECONDS,
    IngestError,
    IngestResult,
    SourceClip,
    by_precedence,
    ingest_splits,
    input_hashes,
    keep_in_one_split,
    link_problem,
)
from psl.files import write_atomic
from psl.data.tables import read_rows

SPLITS_OF_CSV = {
    "unbalanced_train_segments.csv": ("full",),
    "balanced_train_segments.csv": ("balanced", "val"),
    "eval_segments.csv": ("eval",),
}
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a"}
STRONG_HEADER = ["segment_id", "start_time_seconds", "end_time_seconds", "label"]
STRONG_REPORT = "strong.skipped.csv"
SEGMENT_ID = re.compile(r"(.+)_(\d+)")  # YTIDs may hold underscores themselves: the last one splits


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


class AudioIndex(dict):
    """File stem -> the first audio file of that stem; `repeats` holds the stems more files have."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.repeats: dict[str, list[Path]] = {}

    def add(self, stem: str, path: Path) -> None:
        first = self.setdefault(stem, path)
        if first != path:
            self.repeats.setdefault(stem, [first]).append(path)

    def files(self, stem: str) -> list[Path]:
        return self.repeats.get(stem) or ([self[stem]] if stem in self else [])


def index_audio(audio_dir: Path) -> AudioIndex:
    """Every audio file below `audio_dir` by stem (folders reached by a link are not entered)."""
    found = AudioIndex()
    for folder, _, files in os.walk(audio_dir):
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in AUDIO_EXTENSIONS:
                found.add(stem, Path(folder) / name)
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


def source_clips(
    segments: list[Segment], classes: ClassList, audio: dict[str, Path], audio_dir: Path | None = None
) -> list[SourceClip]:
    """One clip per segment. `audio` is an `index_audio` (or any stem -> file mapping); with
    `audio_dir`, a file that links out of it is skipped unread."""
    index = classes.index()
    audio = audio if isinstance(audio, AudioIndex) else AudioIndex(audio)
    clips = []
    for seg in segments:
        files = [f for stem in _candidate_stems(seg) for f in audio.files(stem)]
        path = files[0] if files else None
        source = path.name if path else seg.ytid
        labels = [index[m] for m in seg.mids if m in index]
        clips.append(SourceClip(seg.ytid, source, path, labels, problem=_problem(seg, files, index, audio_dir)))
    return clips


def _problem(seg: Segment, files: list[Path], index: dict[str, int], audio_dir: Path | None) -> str | None:
    unknown = [m for m in seg.mids if m not in index]
    if not files:
        return f"missing: no audio file named {seg.ytid}_{seg.start}_{seg.end}.* or {seg.ytid}.*"
    if len(files) > 1:
        names = sorted(str(f.relative_to(audio_dir)) if audio_dir else str(f) for f in files)
        return f"ambiguous: {len(files)} audio files fit this clip: {', '.join(names)}"
    if audio_dir is not None and files[0].is_symlink():  # os.walk enters no linked folder: files only
        outside = link_problem(files[0], Path(audio_dir), str(files[0].relative_to(audio_dir)))
        if outside is not None:
            return outside
    if unknown:
        return f"label {unknown[0]} is not in the class list"
    if not seg.mids:
        return "no labels"
    return None


def ingest_audioset(
    segment_csvs: list[Path],
    labels_csv: Path,
    audio_dir: Path,
    out: Path,
    *,
    val_fraction: float = 0.05,
    strong: Sequence[Path] = (),
    force: bool = False,
    workers: int | None = None,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    progress: bool = True,
) -> dict[str, IngestResult]:
    classes = _check_layout(segment_csvs, labels_csv, audio_dir, strong)
    inputs = input_hashes([Path(labels_csv), *map(Path, segment_csvs), *map(Path, strong)])
    audio = index_audio(Path(audio_dir))
    parts: dict[str, list[SourceClip]] = {}
    starts: dict[str, list[int]] = {}  # split -> its clips' segment starts in ms, for strong labels
    for path in segment_csvs:
        segments = read_segments(Path(path))
        clips = source_clips(segments, classes, audio, Path(audio_dir))
        splits = SPLITS_OF_CSV[Path(path).name]
        for split in splits:  # an empty split still counts: a store left from an earlier run is stale
            parts.setdefault(split, [])
            starts.setdefault(split, [])
        val_ids = hold_out([c.clip_id for c in clips], val_fraction) if "val" in splits else set()
        for clip, segment in zip(clips, segments):
            split = splits[-1] if clip.clip_id in val_ids else splits[0]
            parts[split].append(clip)
            starts[split].append(round(float(segment.start) * 1000))
    keep_in_one_split(parts)  # before strong labels are attached: only to the listing that is kept
    report = attach_strong(parts, starts, classes, [Path(p) for p in strong]) if strong else None
    results = ingest_splits(
        parts,
        Path(out),
        classes,
        inputs=inputs,
        options={"val_fraction": val_fraction},
        dataset="audioset",
        force=force,
        workers=workers,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        progress=progress,
    )
    if report is not None:
        report.finish(results, Path(out) / STRONG_REPORT)
    return results


def _check_layout(segment_csvs: list[Path], labels_csv: Path, audio_dir: Path, strong: Sequence[Path]) -> ClassList:
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
    for path in strong:
        if not Path(path).is_file():
            raise IngestError(f"strong-label file {path} does not exist")
    return classes


# --- strong labels -----------------------------------------------------------------------------


@dataclass(slots=True)  # AudioSet's train file has ~1M rows
class StrongRow:
    file: Path
    line: int
    ytid: str
    start_ms: int
    onset: float
    offset: float
    label: str

    @property
    def segment_id(self) -> str:
        return f"{self.ytid}_{self.start_ms}"


def read_strong(path: Path) -> Iterator[StrongRow]:
    """The rows of a strong-label TSV; a malformed one stops the ingest, naming file and line."""
    rows = read_rows(path, IngestError, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(rows, (1, []))[1]
    if [h.strip() for h in header] != STRONG_HEADER:
        raise IngestError(f"{path}:1: expected the header {' '.join(STRONG_HEADER)} (tab-separated), got {header}")
    for line, row in rows:
        if len(row) != 4:
            raise IngestError(f"{path}:{line}: expected 4 tab-separated fields ({', '.join(STRONG_HEADER)}), got {row}")
        segment, onset, offset, label = (v.strip() for v in row)
        match = SEGMENT_ID.fullmatch(segment)
        if match is None:
            raise IngestError(f"{path}:{line}: segment_id must be {{YTID}}_{{start_ms}}, got {segment!r}")
        times = _seconds(onset), _seconds(offset)
        if not 0 <= times[0] <= times[1] < math.inf:
            raise IngestError(
                f"{path}:{line}: start/end must be numbers with 0 <= start <= end, got {onset!r}, {offset!r}"
            )
        if not label:
            raise IngestError(f"{path}:{line}: the label is empty")
        yield StrongRow(path, line, match[1], int(match[2]), *times, sys.intern(label))


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


@dataclass
class StrongReport:
    """What became of the strong-label rows: attached to stored clips, or not, and why."""

    rows: int = 0
    events: dict[str, int] = field(default_factory=dict)  # split -> events attached
    clips: dict[str, int] = field(default_factory=dict)  # split -> clips with strong truth
    unknown_segments: Counter = field(default_factory=Counter)  # segment id -> rows
    unknown_labels: Counter = field(default_factory=Counter)  # label -> rows
    skipped_clip_rows: int = 0  # rows of listed segments whose clip was skipped
    report: Path | None = None
    left: list[tuple[StrongRow, str]] = field(default_factory=list)  # rows not attached, and why
    matched: list[tuple[StrongRow, str, str]] = field(default_factory=list)  # row, split, clip id

    def finish(self, results: dict[str, IngestResult], report: Path) -> None:
        """Counts what the stores hold and lists every row left out in `report`."""
        stored = {split: set(result.store.ids) for split, result in results.items()}
        for split, result in results.items():
            self.events[split] = int(result.store.meta.get("strong_events", 0))
            self.clips[split] = int(result.store.meta.get("strong_clips", 0))
            result.strong = self
        for row, split, clip_id in self.matched:
            if clip_id not in stored.get(split, ()):
                self.skipped_clip_rows += 1
                self.left.append((row, "its clip was skipped (see the split's report)"))
        self.report = report
        _write_strong_report(report, self.left)

    def summary(self) -> str:
        attached = ", ".join(f"{split} {n}" for split, n in self.events.items() if n) or "none"
        return (
            f"strong labels: {self.rows} rows, {sum(self.events.values())} events attached to "
            f"{sum(self.clips.values())} clips ({attached}); not attached: "
            f"{sum(self.unknown_segments.values())} rows of {len(self.unknown_segments)} segments no list names, "
            f"{sum(self.unknown_labels.values())} rows of {len(self.unknown_labels)} labels not in the class list, "
            f"{self.skipped_clip_rows} rows of skipped clips (see {self.report})"
        )


def attach_strong(
    parts: dict[str, list[SourceClip]], starts: dict[str, list[int]], classes: ClassList, paths: list[Path]
) -> StrongReport:
    """Sets `events` of the clips whose segments the strong-label files name (to [] for a segment
    all of whose labels are unknown) and returns the report of the rows left out. `starts`: the
    start in ms of each clip's segment, by split and position."""
    index = classes.index()
    segments: dict[tuple[str, int], tuple[str, SourceClip]] = {}
    for split in by_precedence(parts):  # a segment listed twice: the listing kept gets the events
        for i, clip in enumerate(parts[split]):
            segments.setdefault((clip.clip_id, starts[split][i]), (split, clip))
    report = StrongReport()
    for path in paths:
        for row in read_strong(path):
            report.rows += 1
            split, clip = segments.get((row.ytid, row.start_ms), (None, None))
            if clip is None:
                report.unknown_segments[row.segment_id] += 1
                report.left.append((row, "no segment list names this segment"))
                continue
            clip.events = clip.events if clip.events is not None else []
            if row.label not in index:
                report.unknown_labels[row.label] += 1
                report.left.append((row, "label not in the class list"))
                continue
            clip.events.append((row.onset, row.offset, index[row.label]))
            report.matched.append((row, split, clip.clip_id))
    return report


def _write_strong_report(path: Path, left: list[tuple[StrongRow, str]]) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["file", "line", "segment_id", "label", "reason"])
    writer.writerows([row.file.name, row.line, row.segment_id, row.label, why] for row, why in left)
    write_atomic(path, text.getvalue())
