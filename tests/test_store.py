"""The packed clip store: round trips, crops, atomic finish, resuming, integrity checks."""

import json
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from psl.data.classes import ClassList
from psl.data.datasets import ClipDataset, pad_collate
from psl.data.store import ClipStore, StoreWriter

CLASSES = ClassList(("/m/a", "/m/b", "/m/c"), ("A", "B", "C"))


def random_clips(count, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (
            f"clip{i}",
            rng.integers(-32768, 32767, int(rng.integers(300, 5000)), dtype=np.int16),
            sorted(set(rng.integers(0, 3, 2).tolist())),
        )
        for i in range(count)
    ]


def write_store(path, clips, extra=None):
    writer = StoreWriter(path, CLASSES, extra_fields=tuple(extra or ()))
    for cid, samples, labels in clips:
        writer.append(cid, samples, labels, f"{cid}.wav", {k: f"{cid}-{k}" for k in extra or ()})
    return writer.finish({"dataset": "test"})


def test_round_trip_of_clips_labels_and_crops(tmp_path):
    clips = random_clips(12)
    store = write_store(tmp_path / "train", clips, extra=["manually_verified"])
    assert len(store) == 12 and store.classes == CLASSES and store.sample_rate == 16000
    for i, (cid, samples, labels) in enumerate(clips):
        assert store.index_of(cid) == i
        assert np.array_equal(store.read(i), samples)
        assert np.array_equal(store.read(i, 100, 250), samples[100:250])
        assert store.labels[i].tolist() == labels
        assert store.extra["manually_verified"][i] == f"{cid}-manually_verified"
    assert store.label_matrix().sum() == sum(len(c[2]) for c in clips)
    assert json.loads((tmp_path / "train" / "store.json").read_text())["dataset"] == "test"


def test_crops_outside_the_clip_are_refused(tmp_path):
    store = write_store(tmp_path / "s", random_clips(1))
    with pytest.raises(IndexError, match="outside clip 'clip0'"):
        store.read(0, 0, int(store.num_samples[0]) + 1)


def test_an_unfinished_split_is_not_a_store(tmp_path):
    writer = StoreWriter(tmp_path / "train", CLASSES)
    writer.append("a", np.zeros(500, np.int16), [0], "a.wav")
    writer.close()
    with pytest.raises(FileNotFoundError, match="unfinished ingest"):
        ClipStore(tmp_path / "train")


def test_writer_resumes_after_a_torn_write(tmp_path):
    clips = random_clips(6)
    writer = StoreWriter(tmp_path / "train", CLASSES)
    for cid, samples, labels in clips[:3]:
        writer.append(cid, samples, labels, "x")
    writer.close()
    partial = tmp_path / ".train.partial"
    # A kill mid-clip leaves samples without a journal line and half a journal line.
    with open(partial / "audio.i16", "ab") as f:
        f.write(b"\x01\x02" * 777)
    with open(partial / "journal.jsonl", "a") as f:
        f.write('{"clip_id": "clip3", "lab')
    writer = StoreWriter(tmp_path / "train", CLASSES)
    assert writer.done_ids == {"clip0", "clip1", "clip2"}
    for cid, samples, labels in clips[3:]:
        writer.append(cid, samples, labels, "x")
    resumed = writer.finish()
    reference = write_store(tmp_path / "ref", clips)
    assert (tmp_path / "train" / "audio.i16").read_bytes() == (tmp_path / "ref" / "audio.i16").read_bytes()
    assert resumed.manifest_sha256 == reference.manifest_sha256
    assert not partial.exists()


def test_a_finished_store_is_not_overwritten(tmp_path):
    write_store(tmp_path / "s", random_clips(2))
    with pytest.raises(FileExistsError):
        StoreWriter(tmp_path / "s", CLASSES)


def test_duplicate_ids_are_refused(tmp_path):
    writer = StoreWriter(tmp_path / "s", CLASSES)
    writer.append("a", np.zeros(500, np.int16), [0], "a.wav")
    with pytest.raises(ValueError, match="already in"):
        writer.append("a", np.zeros(500, np.int16), [1], "b.wav")


def test_an_edited_manifest_is_detected(tmp_path):
    write_store(tmp_path / "s", random_clips(3))
    manifest = tmp_path / "s" / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("clip1,", "clip9,"))
    with pytest.raises(ValueError, match="does not match the hash"):
        ClipStore(tmp_path / "s")


def test_manifest_hash_ignores_where_files_came_from_but_not_labels(tmp_path):
    clips = random_clips(3)
    a = write_store(tmp_path / "a", clips)
    writer = StoreWriter(tmp_path / "b", CLASSES)
    for cid, samples, labels in clips:
        writer.append(cid, samples, labels, f"/elsewhere/{cid}.flac")
    assert writer.finish().manifest_sha256 == a.manifest_sha256
    clips[0] = (clips[0][0], clips[0][1], [2])
    assert write_store(tmp_path / "c", clips).manifest_sha256 != a.manifest_sha256


def test_store_pickles_and_reads_in_dataloader_workers(tmp_path):
    clips = random_clips(8)
    store = write_store(tmp_path / "s", clips)
    store.read(0)  # opens the file in this process
    clone = pickle.loads(pickle.dumps(store))
    assert np.array_equal(clone.read(5), clips[5][1])
    loader = DataLoader(ClipDataset(store), batch_size=3, num_workers=2, collate_fn=pad_collate)
    seen = {}
    for batch in loader:
        for row, clip in enumerate(batch["clip"].tolist()):
            seen[clip] = batch["wave"][row, : batch["lengths"][row]]
    assert sorted(seen) == list(range(8))
    for i, (_, samples, _) in enumerate(clips):
        assert torch.equal(seen[i], torch.from_numpy(samples))
