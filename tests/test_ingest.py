"""Ingest of the AudioSet, FSD50K and FSDKaggle2018 layouts: what lands in the store and what
lands in the skip report."""

import csv

import numpy as np
import pytest
import soundfile

from layouts import GOOD, TONE_HZ, audioset_layout, fsd50k_layout, fsdkaggle2018_layout, tone
from psl.data.audioset import ingest_audioset
from psl.data.classes import audioset_classes
from psl.data.fsd import ingest_fsd50k, ingest_fsdkaggle2018
from psl.data.ingest import IngestError


def reasons(report_path):
    with open(report_path, newline="") as f:
        return {row["clip_id"]: row["reason"] for row in csv.DictReader(f)}


def assert_is_resampled_tone(samples: np.ndarray, seconds: float):
    """The stored clip is the 440 Hz tone at 16 kHz (away from the resampler's edges)."""
    assert abs(len(samples) - round(seconds * 16000)) <= 1
    expected = tone(seconds, 16000)[: len(samples)]
    middle = slice(200, len(samples) - 200)
    assert np.abs(samples[middle] / 32768.0 - expected[middle]).max() < 2e-3


def test_audioset_layout_lands_in_splits_with_a_report(tmp_path):
    layout = audioset_layout(tmp_path / "as")
    results = ingest_audioset(
        [layout["balanced"], layout["eval"]],
        layout["classes"],
        layout["audio"],
        tmp_path / "out",
        val_fraction=0.25,
        workers=2,
        progress=False,
    )
    assert set(results) == {"balanced", "val", "eval"}
    kept = {cid for split in ("balanced", "val") for cid in results[split].store.ids}
    # eval_segments.csv repeats the first two clips: eval keeps them (tests/test_ingest_rules.py)
    assert kept == {f"yt{name}{i:07d}" for i, (name, *_rest) in enumerate(GOOD)} - {"yta0000000", "ytb0000001"}
    assert len(results["val"].store) + len(results["balanced"].store) == 2
    classes = audioset_classes()
    for split in ("balanced", "val"):
        store = results[split].store
        assert store.classes == classes
        for i, cid in enumerate(store.ids):
            g = int(cid[-7:])
            want = {"/m/09x0r", "/m/04rlf"} if g % 2 else {"/m/0jbk"}
            assert {classes.ids[c] for c in store.labels[i]} == want
            assert_is_resampled_tone(store.read(i), GOOD[g][1])
    skipped = {}
    for split in ("balanced", "val"):
        skipped.update(reasons(results[split].report))
    assert skipped["ytempty"].startswith("unreadable") or skipped["ytempty"].startswith("empty")
    assert skipped["yttruncated"].startswith("unreadable")
    assert skipped["ytnan"] == "contains NaN or Inf samples"
    assert skipped["ytshort"].startswith("too short")
    assert skipped["ytmissing"].startswith("missing")
    assert skipped["ytunknown"] == "label /m/notaclass is not in the class list"
    assert skipped["yta0000000"] == skipped["ytb0000001"] == "duplicate clip id (kept in eval)"
    assert results["eval"].store.ids == ["yta0000000", "ytb0000001"]


def test_audioset_refuses_an_unknown_segment_file_name(tmp_path):
    layout = audioset_layout(tmp_path / "as")
    renamed = tmp_path / "segments.csv"
    renamed.write_text(layout["balanced"].read_text())
    with pytest.raises(IngestError, match="expected one of unbalanced_train_segments.csv, balanced_train_segments.csv"):
        ingest_audioset([renamed], layout["classes"], layout["audio"], tmp_path / "out", progress=False)


def test_audioset_names_a_malformed_row(tmp_path):
    layout = audioset_layout(tmp_path / "as")
    with open(layout["balanced"], "a") as f:
        f.write("onlytwo, 1.0\n")
    with pytest.raises(IngestError, match=r"balanced_train_segments.csv:\d+: expected 4 columns"):
        ingest_audioset([layout["balanced"]], layout["classes"], layout["audio"], tmp_path / "out", progress=False)


def test_fsd50k_layout(tmp_path):
    fsd50k_layout(tmp_path / "fsd")
    results = ingest_fsd50k(tmp_path / "fsd", tmp_path / "out", workers=2, progress=False)
    assert sorted(results) == ["eval", "train", "val"]
    assert results["train"].store.ids == ["100", "101", "102"]
    assert results["val"].store.ids == ["103"]
    assert results["eval"].store.ids == ["5"]
    store = results["train"].store
    assert list(store.classes.names) == ["Bark", "Music", "Speech"]
    assert all(lab.tolist() == [0, 1] for lab in store.labels)
    for i, cid in enumerate(store.ids):
        assert_is_resampled_tone(store.read(i), GOOD[int(cid) - 100][1])
    skipped = reasons(results["train"].report)
    assert set(skipped) == {"200", "201", "202", "203", "999", "300"}
    assert skipped["300"] == "label /m/01yrx is not in the class list"
    assert skipped["999"].startswith("missing")


def test_fsd50k_layout_errors_name_the_file_and_column(tmp_path):
    fsd50k_layout(tmp_path / "fsd")
    dev = tmp_path / "fsd" / "FSD50K.ground_truth" / "dev.csv"
    dev.write_text(dev.read_text().replace("fname,labels,mids,split", "fname,labels,mids,subset"))
    with pytest.raises(IngestError, match=r"dev.csv: expected the columns fname, labels, mids, split; missing split"):
        ingest_fsd50k(tmp_path / "fsd", tmp_path / "out", progress=False)
    dev.unlink()
    with pytest.raises(IngestError, match=r"expected the file .*dev.csv"):
        ingest_fsd50k(tmp_path / "fsd", tmp_path / "out", progress=False)


def test_fsdkaggle2018_layout_keeps_manually_verified(tmp_path):
    fsdkaggle2018_layout(tmp_path / "k")
    results = ingest_fsdkaggle2018(tmp_path / "k", tmp_path / "out", val_fraction=0.25, workers=2, progress=False)
    train, val = results["train"].store, results["val"].store
    assert len(train) + len(val) == 4 and len(val) == 1
    assert list(train.classes.names) == ["Bark", "Cello", "Flute"]
    for store in (train, val):
        for i, cid in enumerate(store.ids):
            g = int(cid, 16)
            assert store.extra["manually_verified"][i] == str(g % 2)
            assert store.classes.names[store.labels[i][0]] == ["Bark", "Cello", "Bark", "Flute"][g]
    assert results["eval"].store.ids == ["t1"]
    assert reasons(results["eval"].report) == {"t2": "label Trumpet is not in the class list"}
    assert "bad" in reasons(results["train"].report) | reasons(results["val"].report)


def test_nothing_usable_is_an_error_with_the_report(tmp_path):
    fsdkaggle2018_layout(tmp_path / "k")
    for wav in (tmp_path / "k" / "FSDKaggle2018.audio_test").iterdir():
        wav.write_bytes(b"")
    with pytest.raises(IngestError, match="no usable clip.*eval.skipped.csv"):
        ingest_fsdkaggle2018(tmp_path / "k", tmp_path / "out", progress=False)


def write_many(root, count):
    """An FSD50K layout with `count` 2-s clips, big enough to interrupt."""
    truth = root / "FSD50K.ground_truth"
    truth.mkdir(parents=True)
    (truth / "vocabulary.csv").write_text("0,Tone,/m/tone\n")
    rng = np.random.default_rng(0)
    rows = ["fname,labels,mids,split"]
    for i in range(count):
        (root / "FSD50K.dev_audio").mkdir(exist_ok=True)
        soundfile.write(root / "FSD50K.dev_audio" / f"{i}.wav", rng.uniform(-0.5, 0.5, 88200), 44100)
        rows.append(f"{i},Tone,/m/tone,train")
    (truth / "dev.csv").write_text("\n".join(rows) + "\n")
    (truth / "eval.csv").write_text("fname,labels,mids\n")


@pytest.mark.parametrize("fmt, subtype", [("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_lossy_formats_decode_to_the_tone(tmp_path, fmt, subtype):
    layout = audioset_layout(tmp_path / "as")
    path = layout["audio"] / f"ytlossy00000_30.000_40.000.{fmt.lower()}"
    soundfile.write(path, tone(2.0, 44100, channels=2), 44100, format=fmt, subtype=subtype)
    with open(layout["eval"], "a") as f:
        f.write('ytlossy00000, 30.000, 40.000, "/m/09x0r"\n')
    store = ingest_audioset([layout["eval"]], layout["classes"], layout["audio"], tmp_path / "out", progress=False)[
        "eval"
    ].store
    samples = store.read(store.index_of("ytlossy00000")) / 32768.0
    assert abs(len(samples) / 16000 - 2.0) < 0.1  # encoders may pad a few ms
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * 16000 / len(samples) - TONE_HZ) < 2.0
    assert np.sqrt(np.mean(samples[2000:-2000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
