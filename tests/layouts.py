"""Tiny datasets in the exact AudioSet, FSD50K and FSDKaggle2018 layouts, with broken files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile

TONE_HZ = 440.0


def tone(seconds: float, sr: int, channels: int = 1, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = amplitude * np.sin(2 * np.pi * TONE_HZ * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write_good(path: Path, seconds: float, sr: int, channels: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, tone(seconds, sr, channels), sr)


def write_broken(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        soundfile.write(path, tone(1.0, 44100), 44100)
        data = path.read_bytes()
        path.write_bytes(data[:30])  # cut inside the header
    elif kind == "nan":
        x = tone(1.0, 16000)
        x[100] = np.nan
        soundfile.write(path, x, 16000, subtype="FLOAT")
    elif kind == "short":
        soundfile.write(path, tone(0.02, 16000), 16000)
    else:
        raise ValueError(kind)


# (name, seconds, sample rate, channels, format) of the usable files.
GOOD = [
    ("a", 2.0, 44100, 2, "wav"),
    ("b", 1.5, 48000, 1, "flac"),
    ("c", 1.0, 16000, 1, "wav"),
    ("d", 2.5, 48000, 2, "flac"),
]
BROKEN = ["empty", "truncated", "nan", "short"]


def audioset_layout(root: Path) -> dict:
    """balanced + eval segment CSVs, the 527-class list, audio named {YTID}_{start}_{end}."""
    classes = Path(__file__).resolve().parents[1] / "psl" / "resources" / "audioset_class_labels_indices.csv"
    audio = root / "audio"
    rows = []
    for i, (name, seconds, sr, ch, fmt) in enumerate(GOOD):
        ytid = f"yt{name}{i:07d}"
        write_good(audio / f"{ytid}_30.000_40.000.{fmt}" if i % 2 else audio / "sub" / f"{ytid}.{fmt}", seconds, sr, ch)
        rows.append((ytid, "/m/09x0r,/m/04rlf" if i % 2 else "/m/0jbk"))
    for kind in BROKEN:
        ytid = f"yt{kind}"
        write_broken(audio / f"{ytid}_30.000_40.000.wav", kind)
        rows.append((ytid, "/m/09x0r"))
    rows.append(("ytmissing", "/m/09x0r"))
    write_good(audio / "ytunknown_30.000_40.000.wav", 1.0, 16000, 1)
    rows.append(("ytunknown", "/m/notaclass"))

    def segments(path, chosen):
        with open(path, "w") as f:
            f.write("# Segments csv created Sun Mar  5 10:54:31 2017\n")
            f.write(
                f"# num_ytids={len(chosen)}, num_segs={len(chosen)}, num_unique_labels=527, num_positive_labels=9\n"
            )
            f.write("# YTID, start_seconds, end_seconds, positive_labels\n")
            for ytid, mids in chosen:
                f.write(f'{ytid}, 30.000, 40.000, "{mids}"\n')

    segments(root / "balanced_train_segments.csv", rows)
    segments(root / "eval_segments.csv", rows[:2])
    return dict(
        classes=classes, audio=audio, balanced=root / "balanced_train_segments.csv", eval=root / "eval_segments.csv"
    )


def fsd50k_layout(root: Path) -> None:
    truth = root / "FSD50K.ground_truth"
    truth.mkdir(parents=True)
    vocab = [("Bark", "/m/05tny_"), ("Music", "/m/04rlf"), ("Speech", "/m/09x0r")]
    with open(truth / "vocabulary.csv", "w", newline="") as f:
        csv.writer(f).writerows([i, label, mid] for i, (label, mid) in enumerate(vocab))
    dev = [["fname", "labels", "mids", "split"]]
    for i, (_, seconds, sr, ch, _) in enumerate(GOOD):
        write_good(root / "FSD50K.dev_audio" / f"{100 + i}.wav", seconds, sr, ch)
        dev.append([str(100 + i), "Bark,Music", "/m/05tny_,/m/04rlf", "val" if i == 3 else "train"])
    for i, kind in enumerate(BROKEN):
        write_broken(root / "FSD50K.dev_audio" / f"{200 + i}.wav", kind)
        dev.append([str(200 + i), "Bark", "/m/05tny_", "train"])
    dev.append(["999", "Bark", "/m/05tny_", "train"])  # missing on disk
    write_good(root / "FSD50K.dev_audio" / "300.wav", 1.0, 44100, 1)
    dev.append(["300", "Cat", "/m/01yrx", "train"])  # not in the vocabulary
    with open(truth / "dev.csv", "w", newline="") as f:
        csv.writer(f).writerows(dev)
    write_good(root / "FSD50K.eval_audio" / "5.wav", 3.0, 44100, 2)
    with open(truth / "eval.csv", "w", newline="") as f:
        csv.writer(f).writerows([["fname", "labels", "mids"], ["5", "Speech", "/m/09x0r"]])


def fsdkaggle2018_layout(root: Path) -> None:
    meta = root / "FSDKaggle2018.meta"
    meta.mkdir(parents=True)
    train = [["fname", "label", "manually_verified", "freesound_id", "license"]]
    labels = ["Bark", "Cello", "Bark", "Flute"]
    for i, (_, seconds, sr, ch, _) in enumerate(GOOD):
        write_good(root / "FSDKaggle2018.audio_train" / f"{i:08x}.wav", seconds, sr, ch)
        train.append([f"{i:08x}.wav", labels[i], str(i % 2), "1", "CC0"])
    write_broken(root / "FSDKaggle2018.audio_train" / "bad.wav", "empty")
    train.append(["bad.wav", "Cello", "1", "2", "CC0"])
    with open(meta / "train_post_competition.csv", "w", newline="") as f:
        csv.writer(f).writerows(train)
    write_good(root / "FSDKaggle2018.audio_test" / "t1.wav", 1.2, 44100, 1)
    write_good(root / "FSDKaggle2018.audio_test" / "t2.wav", 1.2, 44100, 1)
    with open(meta / "test_post_competition_scoring_clips.csv", "w", newline="") as f:
        csv.writer(f).writerows(
            [
                ["fname", "label", "usage", "freesound_id", "license"],
                ["t1.wav", "Flute", "Public", "3", "CC0"],
                ["t2.wav", "Trumpet", "Private", "4", "CC0"],
            ]
        )
