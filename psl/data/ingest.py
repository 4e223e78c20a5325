"""Turning a list of audio files with labels into a clip store, in parallel and resumably.

The dataset-specific modules (audioset, fsd) only parse their metadata into
`SourceClip`s; everything about decoding, skipping, progress, resuming and reports is
here. Clips are decoded by a process pool but appended in list order, so an
interrupted and resumed ingest writes exactly the store an uninterrupted one writes.

What is skipped, with the reason in the report: files that are missing, named outside the
dataset's folder, unreadable, empty, hold NaN or Inf, are shorter than `min_seconds` or longer
than `max_seconds` (read from the header, so an hour-long file is never decoded), or have an
absurd sample rate; clips without labels or with labels outside the class list; repeated clip
ids. What is kept: digital silence, which is valid audio (datasets label silent clips too); a
WAV cut short in its samples, as the samples it holds (libsndfile reports that length); any
sample rate from 1 to 384 kHz and any channel count, mixed down to mono at 16 kHz. Metadata that
cannot be parsed stops the ingest with an IngestError naming the file and line.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from psl.data.audio import SAMPLE_RATE, AudioError, decode, to_int16
from psl.data.classes import ClassList
from psl.data.parallel import ordered_results
from psl.data.store import ClipStore, StoreWriter, is_store

DEFAULT_MIN_SECONDS = 0.1
DEFAULT_MAX_SECONDS = 600.0  # AudioSet and FSD clips are at most 30 s; 10 minutes of 16-kHz int16 is 19 MB


class IngestError(Exception):
    """The layout is wrong or nothing usable remains; the message says what."""


@dataclass
class SourceClip:
    clip_id: str
    source: str  # the file as the metadata names it, for reports
    path: Path | None  # None when no file was found
    labels: list[int]
    extra: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # a reason to skip known before decoding


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


def report_path(split_dir: Path) -> Path:
    return split_dir.with_name(f"{split_dir.name}.skipped.csv")


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
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["clip_id", "source", "reason"])
        for s in skipped:
            writer.writerow([s.clip_id, s.source, s.reason])
    os.replace(tmp, path)


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
    progress: bool = True,
) -> IngestResult:
    """Decodes `clips` into the store at `out` (a split directory). A finished store is left
    as it is; an unfinished one is resumed. Unusable clips are listed in `<out>.skipped.csv`."""
    out = Path(out)
    report = report_path(out)
    if is_store(out):
        return IngestResult(ClipStore(out), _read_report(report), decoded=0, resumed=0, report=report)
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

    writer = StoreWriter(out, classes, extra_fields)
    done = writer.done_ids
    todo = [c for c in usable if c.clip_id not in done]
    min_samples = max(1, int(round(min_seconds * SAMPLE_RATE)))
    jobs = [(str(c.path), min_samples, max_seconds) for c in todo]
    workers = workers or min(os.cpu_count() or 1, 8)
    results = ordered_results(
        _decode_job,
        jobs,
        workers=workers,
        initializer=_init_worker,
        desc=f"ingest {out.name}",
        total=len(usable),
        initial=len(done),
        progress=progress,
    )
    with writer.closing_on_error():
        for clip, (ok, result) in zip(todo, results):
            if ok:
                writer.append(clip.clip_id, result, clip.labels, clip.source, clip.extra)
            else:
                skipped.append(Skipped(clip.clip_id, clip.source, result))
    write_report(report, skipped)
    if not len(writer):
        writer.close()
        raise IngestError(f"no usable clip for {out}: all {len(clips)} were skipped, see {report}")
    store = writer.finish(info)
    return IngestResult(store, skipped, decoded=len(todo), resumed=len(done), report=report)


def _read_report(path: Path) -> list[Skipped]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [Skipped(r["clip_id"], r["source"], r["reason"]) for r in csv.DictReader(f)]
