"""Label stores check themselves: a truncated frames file, an index that lies about frame
counts or offsets, lost metadata or frames changed in place are refused with one line
naming the file, on open (cheap checks), on `verify()` / `psl label --verify`, and before
a student uses a store downloaded from an MLflow run. Stores from before checksums open."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from psl.cli import app
from psl.data.classes import ClassList
from psl.data.store import StoreWriter
from psl.labels import CorruptLabels, LabelStore, verify_report, write_label_store
from psl.models.mobilenetv2 import TaggerOutput

CLASSES = ClassList(("/m/a", "/m/b", "/m/c"), ("A", "B", "C"))
META = dict(
    teacher_run_id="", teacher_checkpoint_sha256="x", class_names=[], frame_seconds=0.32, frontend={}, created="now"
)
PER_FRAME = 5120  # samples per 0.32-s teacher frame at 16 kHz


class LoudnessTeacher(nn.Module):
    """A stand-in teacher whose frames differ from clip to clip: each frame's mean |sample|,
    per class scaled differently, so that another clip's rows are another clip's labels."""

    num_classes = len(CLASSES.ids)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> TaggerOutput:
        count = int(wave.shape[1]) // PER_FRAME
        level = wave[:, : count * PER_FRAME].float().abs().reshape(len(wave), count, PER_FRAME).mean(-1) / 32768
        frames = torch.stack([level, level / 2, 1 - level], dim=-1)
        return TaggerOutput(frames.mean(1), frames, torch.zeros(len(wave), 4), lengths // PER_FRAME)


def make_clip_store(path: Path):
    rng = np.random.default_rng(0)
    writer = StoreWriter(path, CLASSES)
    for i, seconds in enumerate((1.0, 1.0, 1.6, 0.7, 2.2)):  # clips 0 and 1: the same frame count
        samples = (rng.standard_normal(int(seconds * 16000)) * 1000 * (i + 1)).astype(np.int16)
        writer.append(f"clip{i}", samples, [i % 3], f"clip{i}.wav")
    return writer.finish({"dataset": "test"})


@pytest.fixture(scope="module")
def clip_store(tmp_path_factory):
    return make_clip_store(tmp_path_factory.mktemp("clips") / "val")


@pytest.fixture
def labels(clip_store, tmp_path) -> Path:
    """A freshly written label store (frames mode) of the five clips."""
    store = write_label_store(LoudnessTeacher(), clip_store, tmp_path / "labels" / "val", META, progress=False)
    return store.path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def edit_meta(path: Path, change) -> None:
    meta = json.loads((path / "labels.json").read_text())
    change(meta)
    (path / "labels.json").write_text(json.dumps(meta))


def edit_index(path: Path, change) -> None:
    """Rewrites index.csv after `change(rows)` (rows without the header), as csv writes it."""
    with open(path / "index.csv", newline="") as f:
        rows = list(csv.reader(f))
    body = rows[1:]
    change(body)
    out = io.StringIO()
    csv.writer(out).writerows([rows[0], *body])
    with open(path / "index.csv", "w", newline="") as f:
        f.write(out.getvalue())


def as_legacy(path: Path) -> None:
    """The store as psl wrote it before checksums were recorded."""
    edit_meta(path, lambda m: (m.pop("frames_sha256"), m.pop("index_sha256")))


def test_a_finished_store_records_and_verifies_its_checksums(labels):
    meta = json.loads((labels / "labels.json").read_text())
    assert meta["frames_sha256"] == sha256(labels / "frames.f16")
    assert meta["index_sha256"] == sha256(labels / "index.csv")
    store = LabelStore(labels)
    assert store.verify() is True
    assert verify_report(labels.parent) == [f"{labels}: 5 clips, frames and index match their sha256"]


def swap_offsets_of_equal_clips(rows: list[list[str]]) -> None:
    """Clips 0 and 1 have as many frames: swapping their offsets keeps a valid layout."""
    first, second = (next(r for r in rows if r[0] == cid) for cid in ("clip0", "clip1"))
    assert first[2] == second[2]
    first[1], second[1] = second[1], first[1]


def recount(rows: list[list[str]]) -> None:
    rows[0][2] = str(int(rows[0][2]) + 1)


def shift(rows: list[list[str]]) -> None:
    rows[-1][1] = str(int(rows[-1][1]) + 1)


@pytest.mark.parametrize(
    "damage, legacy_message",
    [
        (swap_offsets_of_equal_clips, None),  # undetectable without the checksum
        (recount, "offsets overlap or leave gaps"),
        (shift, "offsets overlap or leave gaps"),
        (lambda rows: rows.clear(), "index.csv lists no clips"),
    ],
    ids=["swapped-offsets", "wrong-frame-count", "wrong-offset", "empty"],
)
def test_an_index_that_lies_is_refused_on_open(labels, damage, legacy_message):
    before = LabelStore(labels).frames("clip0")
    edit_index(labels, damage)
    with pytest.raises(CorruptLabels, match=rf"^{labels / 'index.csv'} does not match the checksum in labels.json"):
        LabelStore(labels)
    as_legacy(labels)  # without a checksum, the layout checks alone
    if legacy_message is None:
        assert not np.array_equal(LabelStore(labels).frames("clip0"), before)  # what the checksum prevents
    else:
        with pytest.raises(CorruptLabels, match=legacy_message):
            LabelStore(labels)


@pytest.mark.parametrize("cut, state", [(-7, "truncated"), (3, "longer than its index says")])
def test_a_frames_file_of_the_wrong_size_is_refused_on_open(labels, cut, state):
    frames = labels / "frames.f16"
    data = frames.read_bytes()
    frames.write_bytes(data[:cut] if cut < 0 else data + bytes(cut))
    with pytest.raises(
        CorruptLabels, match=rf"^{frames} holds {len(data) + cut} bytes, {len(data)} expected .*{state}"
    ):
        LabelStore(labels)


def test_frames_changed_in_place_are_caught_by_verify(labels):
    frames = labels / "frames.f16"
    data = bytearray(frames.read_bytes())
    data[10] ^= 0xFF
    frames.write_bytes(bytes(data))
    store = LabelStore(labels)  # same size and layout: opening stays cheap and passes
    with pytest.raises(CorruptLabels, match=rf"^{frames} does not match the checksum in labels.json"):
        store.verify()


@pytest.mark.parametrize("key", ["frame_seconds", "class_ids", "mode", "manifest_sha256", "frames_sha256"])
def test_metadata_that_lost_a_key_is_refused(labels, key):
    edit_meta(labels, lambda m: m.pop(key))
    with pytest.raises(CorruptLabels, match=rf"^{labels / 'labels.json'}: lacks the key '{key}'"):
        LabelStore(labels)


def test_missing_empty_or_unreadable_files_are_named(labels):
    as_legacy(labels)  # the layout checks, not the checksum, meet these
    (labels / "index.csv").write_bytes(b"")
    with pytest.raises(CorruptLabels, match=rf"^{labels / 'index.csv'} lists no clips"):
        LabelStore(labels)
    (labels / "index.csv").unlink()
    with pytest.raises(CorruptLabels, match=rf"^{labels / 'index.csv'} is missing"):
        LabelStore(labels)
    (labels / "labels.json").write_text("{not json")
    with pytest.raises(CorruptLabels, match=rf"^{labels / 'labels.json'}: not valid JSON"):
        LabelStore(labels)


def test_a_store_from_before_checksums_still_opens(labels):
    as_legacy(labels)
    store = LabelStore(labels)
    assert store.verify() is False and len(store.ids) == 5
    assert verify_report(labels) == [
        f"{labels}: 5 clips, written before checksums were recorded: layout checked only (label again to add them)"
    ]


def psl(*args: str):
    return CliRunner().invoke(app, list(args))


def test_psl_label_verify_reports_each_store_or_one_line_naming_the_damaged_file(labels):
    good = psl("label", "--verify", str(labels.parent))
    assert good.exit_code == 0 and good.stdout == f"{labels}: 5 clips, frames and index match their sha256\n"
    frames = labels / "frames.f16"
    frames.write_bytes(frames.read_bytes()[::-1])
    bad = psl("label", "--verify", str(labels.parent))
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1 and bad.stdout == ""
    assert bad.stderr.startswith(f"error: {frames} does not match the checksum"), bad.stderr
    edit_meta(labels, lambda m: m.pop("frame_seconds"))
    lost = psl("label", "--verify", str(labels))
    assert lost.exit_code == 2 and lost.stderr.startswith(f"error: {labels / 'labels.json'}: lacks the key")
    nothing = psl("label", "--verify", str(labels.parent.parent))
    assert nothing.exit_code == 2 and "holds no psl label store" in nothing.stderr


def test_a_student_refuses_a_downloaded_store_that_was_altered(labels, tracking, tmp_path):
    """The student stage resolves a `label` run id to the store the run logged, downloaded:
    the download is verified in full before the student reads it."""
    import mlflow

    from psl.stages.student import open_labels
    from psl.tracking import experiment_id, log_dir

    with mlflow.start_run(experiment_id=experiment_id()) as run:
        log_dir(labels, "labels/val")
    store, run_id = open_labels(run.info.run_id, "val", tmp_path / "scratch1")
    assert run_id == run.info.run_id and store.ids == LabelStore(labels).ids
    logged = Path(mlflow.get_run(run.info.run_id).info.artifact_uri.removeprefix("file://")) / "labels" / "val"
    data = bytearray((logged / "frames.f16").read_bytes())
    data[-1] ^= 0x01  # one bit of the artifact
    (logged / "frames.f16").write_bytes(bytes(data))
    with pytest.raises(CorruptLabels, match=r"frames.f16 does not match the checksum in labels.json"):
        open_labels(run.info.run_id, "val", tmp_path / "scratch2")
