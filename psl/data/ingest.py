"""Turning a list of audio files with labels into a clip store, in parallel and resumably.

The dataset-specific modules (audioset, fsd) only parse their metadata into
`SourceClip`s; everything about decoding, skipping, progress, resuming and reports is
here. Clips are decoded by a process pool but appended in list order, so an
interrupted and resumed ingest writes exactly the store an uninterrupted one writes.

What is skipped, with the reason in the report: files that are missing, named outside the
dataset's folder (by `../`, an absolute name or a symbolic link that leads out of it), unreadable,
empty, hold NaN or Inf, are shorter than `min_seconds` or longer than `max_seconds` (read from the
header, so an hour-long file is never decoded), or have an absurd sample rate; clips without
labels or with labels outside the class list; clips whose audio is ambiguous (two files fit);
repeated clip ids. What is kept: digital silence, which is valid audio (datasets label silent
clips too); a WAV cut short in its samples, as the samples it holds (libsndfile reports that
length); any sample rate from 1 to 384 kHz and any channel count, mixed down to mono at 16 kHz.
Metadata that cannot be parsed stops the ingest with an IngestError naming the file and line.

One split per clip: a clip id listed for two splits is kept in the first of eval, val, balanced,
train, full (the held-out splits first, then the smaller, curated training split) and skipped,
with the reason, from the others, whether or not its audio turns out to be usable. So evaluation
data is never shrunk by training data, no clip is trained on and evaluated on, and where a clip
lands depends only on the lists, not on which files were downloaded.

No stale data: a finished split records in its store.json what it was built from (`built_from`:
the sha256 of every metadata file, the options, the class list's hash and a hash of the clip list
with each file's size). A later run into the same folder returns a split unchanged when it would
build the same clips with the same options, refuses with what changed when it would not, and
rebuilds every split of the run with `force`. An interrupted split records the same at its start,
so a run resumes it only when it builds the same. Audio is recorded by name and size, not content
(hashing AudioSet's two million files would take hours): `force` rebuilds after files were
replaced in place.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from psl.data.audio import SAMPLE_RATE, decode, to_int16
from psl.data.classes import ClassList
from psl.data.parallel import ordered_results
from psl.data.store import (
    META_FILE,
    STRONG_FILE,
    ClipStore,
    StoreWriter,
    is_store,
    started_from,
    strong_csv_text,
)
from psl.errors import AudioError, IngestError
from psl.files import write_atomic

if TYPE_CHECKING:
    from psl.data.audioset import StrongReport

DEFAULT_MIN_SECONDS = 0.1
DEFAULT_MAX_SECONDS = 600.0  # AudioSet and FSD clips are at most 30 s; 10 minutes of 16-kHz int16 is 19 MB
# Which split keeps a clip listed for several (see the module's docstring); others go last.
SPLIT_PRECEDENCE = ("eval", "val", "balanced", "train", "full")
RECORD_VERSION = 1  # of `built_from`; a store recorded differently is rebuilt, not trusted


@dataclass
class SourceClip:
    clip_id: str
    source: str  # the file as the metadata names it, for reports
    path: Path | None  # None when no file was found
    labels: list[int]
    extra: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # a reason to skip known before decoding
    events: list[tuple[float, float, int]] | None = None  # strong truth (onset, offset, class), if known


@dataclass
class Skipped:
    clip_id: str
    source: str
    reason: str


@dataclass
class IngestResult:
    store: ClipStore
    skipped: list[Skipped]
    decoded: int  # files decoded by this run (not counting those a previous run finished)
    resumed: int  # clips a previous, interrupted run had already written
    report: Path
    strong: StrongReport | None = None  # AudioSet's strong labels, where some were given


def report_path(split_dir: Path) -> Path:
    return split_dir.with_name(f"{split_dir.name}.skipped.csv")


def by_precedence(splits) -> list[str]:
    """`splits` in the order in which they keep a clip listed for several."""
    rank = {split: i for i, split in enumerate(SPLIT_PRECEDENCE)}
    return sorted(splits, key=lambda split: rank.get(split, len(rank)))


def keep_in_one_split(parts: dict[str, list[SourceClip]]) -> None:
    """Marks every listing of a clip id but the one in the split that SPLIT_PRECEDENCE puts first
    as a problem, so it is skipped and reported there. Repeats within a split are left to `ingest`."""
    owner: dict[str, str] = {}
    for split in by_precedence(parts):
        for clip in parts[split]:
            kept_in = owner.setdefault(clip.clip_id, split)
            if kept_in != split and clip.problem is None:
                clip.problem = f"duplicate clip id (kept in {kept_in})"


def link_problem(path: Path, folder: Path, name: str) -> str | None:
    """The reason to skip `path` (shown as `name`) when a symbolic link leads it out of `folder`,
    or None where it stays inside. Such a file is never read: a link is no way around the `../`
    rule."""
    try:
        target = path.resolve()
    except (OSError, RuntimeError, ValueError) as error:  # a link loop, a name too long, a NUL byte
        return f"unreadable: {name} cannot be resolved ({error})"
    if target.is_relative_to(_resolved(folder)):
        return None
    return f"path escapes the dataset folder: {name} links to {target}"


@functools.cache
def _resolved(folder: Path) -> Path:
    return folder.resolve()  # once per folder, not per clip


def input_hashes(paths: list[Path]) -> dict[str, str]:
    """File name -> sha256 of the metadata files an ingest reads (names, not folders, so that a
    dataset that moved is the same input)."""
    hashes = {}
    for path in paths:
        name = Path(path).name
        if name in hashes:
            raise IngestError(f"{path}: a file named {name} is given twice")
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        hashes[name] = digest.hexdigest()
    return hashes


def built_from(clips: list[SourceClip], classes: ClassList, inputs: dict[str, str], options: dict) -> dict:
    """What a split is built from, as its store.json records it."""
    digest = hashlib.sha256()
    for clip in clips:
        usable = clip.problem is None and clip.path is not None
        size = _size(clip.path) if usable else None
        row = (clip.clip_id, clip.source, sorted(clip.labels), sorted(clip.extra.items()), usable, size, clip.events)
        digest.update(f"{row!r}\n".encode())  # repr: exact for str, int and float, and faster than JSON
    return dict(
        version=RECORD_VERSION,
        inputs=inputs,
        options=options,
        classes_sha256=classes.sha256(),
        clips_sha256=digest.hexdigest(),
    )


def _size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _builds_the_same(old: dict | None, new: dict) -> bool:
    """The inputs' hashes are left out: a split whose clips and options are the same is the same,
    even if another split's list changed."""
    keys = ("version", "options", "classes_sha256", "clips_sha256")
    return isinstance(old, dict) and all(old.get(k) == new[k] for k in keys)


def _clip_changes(split_dir: Path, clips: list[SourceClip]) -> list[str]:
    """Clips added to, removed from or relabelled in a finished split by the new lists."""
    store = ClipStore(split_dir)
    kept = dict(zip(store.ids, (labels.tolist() for labels in store.labels)))
    skipped = {s.clip_id for s in _read_report(report_path(split_dir))}
    listed: dict[str, SourceClip] = {}
    for clip in clips:
        if clip.problem is None:
            listed.setdefault(clip.clip_id, clip)
    changed = {
        "added": [c for c in listed if c not in kept and c not in skipped],
        "removed": [c for c in kept if c not in listed],
        "relabelled": [c for c in kept if c in listed and sorted(listed[c].labels) != kept[c]],
    }
    return [f"{len(ids)} clips {what} (e.g. {ids[0]!r})" for what, ids in changed.items() if ids]


def _staleness(split_dir: Path, clips: list[SourceClip], record: dict) -> str | None:
    """Why the split at `split_dir` (finished or interrupted) is not what this run builds, or None."""
    if is_store(split_dir):
        old = _read_json(split_dir / META_FILE).get("built_from")
        if not clips:
            return f"{split_dir} exists, but this run lists no clip for it"
        if _builds_the_same(old, record):
            return None
        if not isinstance(old, dict) or old.get("version") != RECORD_VERSION:
            # Nothing to compare with: refusing would break every re-run of an older
            # benchmark or ingest (the demo re-ingests its FSD-like set on each run).
            message = f"{split_dir} records no inputs (built by an older psl): kept as it is; --force rebuilds it"
            warnings.warn(message, stacklevel=2)
            return None
        changes = _what_changed(old, record) + _clip_changes(split_dir, clips)
    else:
        old = started_from(split_dir)
        if old is None or _builds_the_same(old, record):  # nothing recorded: resumed as before
            return None
        changes = ["an interrupted run was building it"] + _what_changed(old, record)
    return f"{split_dir} was built from other inputs ({'; '.join(changes or ['the audio files found changed'])})"


def _what_changed(old: dict, new: dict) -> list[str]:
    changes = []
    old_inputs, new_inputs = old.get("inputs") or {}, new["inputs"]
    for name in sorted(set(old_inputs) | set(new_inputs)):
        if old_inputs.get(name) != new_inputs.get(name):
            state = "is new" if name not in old_inputs else "is not given" if name not in new_inputs else "changed"
            changes.append(f"{name} {state}")
    old_options = old.get("options") or {}
    for key in sorted(set(old_options) | set(new["options"])):
        if old_options.get(key) != new["options"].get(key):
            changes.append(f"{key} was {old_options.get(key)!r}, now {new['options'].get(key)!r}")
    if old.get("classes_sha256") != new["classes_sha256"]:
        changes.append("the class list changed")
    return changes


def _read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except ValueError:
        raise IngestError(f"{path}: not a JSON object; run again with --force to rebuild the split") from None
    return meta if isinstance(meta, dict) else {}


def _overlaps_with_earlier_splits(parts: dict[str, list[SourceClip]], out: Path) -> list[str]:
    """Finished splits in `out` that this run does not build but that hold clips it lists: a clip
    would then be in two splits (e.g. `balanced` ingested first, `eval` now)."""
    listed = {c.clip_id: split for split, clips in parts.items() for c in clips if c.problem is None}
    others = sorted(p for p in out.iterdir() if p.name not in parts and is_store(p)) if out.is_dir() else []
    problems = []
    for other in others:
        both = [cid for cid in ClipStore(other).ids if cid in listed]
        if both:
            problems.append(
                f"{other} (from an earlier run) holds {len(both)} clips this run puts in {listed[both[0]]} "
                f"(e.g. {both[0]!r}): ingest all of the dataset's lists in one run"
            )
    return problems


def ingest_splits(
    parts: dict[str, list[SourceClip]],
    out: Path,
    classes: ClassList,
    *,
    inputs: dict[str, str],
    options: dict,
    dataset: str,
    extra_fields: tuple[str, ...] = (),
    force: bool = False,
    workers: int | None = None,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    progress: bool = True,
) -> dict[str, IngestResult]:
    """Ingests the splits of one dataset into `out/<split>`: one split per clip, and every split
    checked against what it was built from before any is decoded, so that a refusal comes at once."""
    keep_in_one_split(parts)
    options = dict(options, min_seconds=min_seconds, max_seconds=max_seconds)
    records = {split: built_from(clips, classes, inputs, options) for split, clips in parts.items()}
    overlaps = _overlaps_with_earlier_splits(parts, out)
    if overlaps:
        raise IngestError("; ".join(overlaps))
    stale = [] if force else [p for s, c in parts.items() if (p := _staleness(out / s, c, records[s])) is not None]
    if stale:
        raise IngestError("; ".join(stale) + "; run again with --force to rebuild (or use a new --out)")
    results = {}
    for split, clips in parts.items():
        if force and is_store(out / split):
            shutil.rmtree(out / split)
        if clips:
            info = dict(dataset=dataset, split=split, built_from=records[split])
            settings = (extra_fields, workers, min_seconds, max_seconds, force, progress)
            results[split] = _ingest_split(clips, out / split, classes, info, *settings)
    return results


def ingest(
    clips: list[SourceClip],
    out: Path,
    classes: ClassList,
    *,
    extra_fields: tuple[str, ...] = (),
    workers: int | None = None,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    info: dict | None = None,
    inputs: dict[str, str] | None = None,
    force: bool = False,
    progress: bool = True,
) -> IngestResult:
    """Decodes `clips` into the store at `out` (a split directory). A finished store built from the
    same is left as it is, one built from other clips or options is refused (rebuilt with `force`);
    an unfinished one is resumed. Unusable clips are listed in `<out>.skipped.csv`."""
    out = Path(out)
    record = built_from(clips, classes, inputs or {}, dict(min_seconds=min_seconds, max_seconds=max_seconds))
    if force and is_store(out):
        shutil.rmtree(out)
    elif (problem := _staleness(out, clips, record)) is not None:
        raise IngestError(f"{problem}; run again with --force to rebuild it")
    info = dict(info or {}, built_from=record)
    return _ingest_split(clips, out, classes, info, extra_fields, workers, min_seconds, max_seconds, force, progress)


def _decode_job(job: tuple[str, int, float]) -> tuple[bool, np.ndarray | str]:
    path, min_samples, max_seconds = job
    try:
        samples = decode(Path(path), max_seconds=max_seconds)
    except AudioError as error:
        return False, str(error)
    except OSError as error:
        return False, f"unreadable: {error}"
    if len(samples) < min_samples:
        return False, f"too short: {len(samples) / SAMPLE_RATE:.3f} s < {min_samples / SAMPLE_RATE:.3f} s"
    return True, to_int16(samples)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # the pool is the parallelism


def write_report(path: Path, skipped: list[Skipped]) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["clip_id", "source", "reason"])
    writer.writerows([s.clip_id, s.source, s.reason] for s in skipped)
    write_atomic(path, text.getvalue())


def _usable(clips: list[SourceClip]) -> tuple[list[SourceClip], list[Skipped]]:
    """The clips to decode, and those skipped before decoding (known problems, repeated ids)."""
    skipped: list[Skipped] = []
    usable: list[SourceClip] = []
    seen: set[str] = set()
    for clip in clips:
        if clip.problem is not None:
            skipped.append(Skipped(clip.clip_id, clip.source, clip.problem))
        elif clip.clip_id in seen:
            skipped.append(Skipped(clip.clip_id, clip.source, "duplicate clip id"))
        else:
            seen.add(clip.clip_id)
            usable.append(clip)
    return usable, skipped


def _ingest_split(
    clips, out: Path, classes: ClassList, info: dict, extra_fields, workers, min_seconds, max_seconds, force, progress
) -> IngestResult:
    report = report_path(out)
    if is_store(out):  # checked by the caller to be built from the same
        return IngestResult(ClipStore(out), _read_report(report), decoded=0, resumed=0, report=report)
    usable, skipped = _usable(clips)
    writer = StoreWriter(out, classes, extra_fields)
    if force:  # what an interrupted run wrote goes too (under the writer's lock)
        writer.discard()
        writer = StoreWriter(out, classes, extra_fields)
    done = writer.done_ids
    todo = [c for c in usable if c.clip_id not in done]
    min_samples = max(1, int(round(min_seconds * SAMPLE_RATE)))
    jobs = [(str(c.path), min_samples, max_seconds) for c in todo]
    results = ordered_results(
        _decode_job,
        jobs,
        workers=workers or min(os.cpu_count() or 1, 8),
        initializer=_init_worker,
        desc=f"ingest {out.name}",
        total=len(usable),
        initial=len(done),
        progress=progress,
    )
    with writer.closing_on_error():
        writer.record_start(info["built_from"])  # before the first clip (the pool starts lazily)
        for clip, (ok, result) in zip(todo, results):
            if ok:
                writer.append(clip.clip_id, result, clip.labels, clip.source, clip.extra)
            else:
                skipped.append(Skipped(clip.clip_id, clip.source, result))
        write_report(report, skipped)
    if not len(writer):
        writer.close()
        raise IngestError(f"no usable clip for {out}: all {len(clips)} were skipped, see {report}")
    written = writer.done_ids
    attachments, counts = _strong_truth([c for c in usable if c.clip_id in written], classes)
    store = writer.finish(dict(info, **counts), attachments)
    return IngestResult(store, skipped, decoded=len(todo), resumed=len(done), report=report)


def _strong_truth(clips: list[SourceClip], classes: ClassList) -> tuple[dict[str, str], dict[str, int]]:
    """strong.csv for the stored clips that carry events (none: no file), and its counts for store.json.
    The SNR of a real recording's event is unknown: nan."""
    covered = [c for c in clips if c.events is not None]
    if not covered:
        return {}, {}
    rows = [
        (c.clip_id, onset, offset, k, classes.ids[k], "nan", int(k in c.labels))
        for c in covered
        for onset, offset, k in c.events
    ]
    return {STRONG_FILE: strong_csv_text(rows)}, dict(strong_clips=len(covered), strong_events=len(rows))


def _read_report(path: Path) -> list[Skipped]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [Skipped(r["clip_id"], r["source"], r["reason"]) for r in csv.DictReader(f)]
