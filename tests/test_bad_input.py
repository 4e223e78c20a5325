"""Bad input at the data entry points, beyond the broken files of tests/test_ingest.py: odd
sample rates and channel counts, files too long to load, silence, metadata that names files
outside the dataset, repeated ids, empty labels, malformed tables, and how `psl data` reports
them."""

import csv
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from layouts import TONE_HZ, audioset_layout, fsd50k_layout, fsdkaggle2018_layout, tone
from psl.cli import app
from psl.data.audio import AudioError, decode
from psl.data.audioset import ingest_audioset, read_segments
from psl.data.classes import ClassList
from psl.data.fsd import ingest_fsd50k, ingest_fsdkaggle2018
from psl.data.ingest import IngestError, SourceClip, ingest
from psl.data.store import ClipStore

runner = CliRunner()


def reasons(report_path):
    with open(report_path, newline="") as f:
        return {row["clip_id"]: row["reason"] for row in csv.DictReader(f)}


def append(path, *rows):
    with open(path, "a", newline="") as f:
        csv.writer(f).writerows(rows)


def write(path, samples, rate, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate, **kwargs)
    return path


def dominant_hz(samples: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * rate / len(samples)


# --- audio -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rate, channels",
    [(7350, 1), (8000, 1), (11127, 1), (44101, 2), (96000, 2), (48000, 6), (384000, 1)],
)
def test_unusual_rates_and_channel_counts_decode_to_the_tone(tmp_path, rate, channels):
    # 11127 and 44101 share no factor with 16 kHz: they take the polyphase resampler.
    samples = decode(write(tmp_path / "x.wav", tone(1.0, rate, channels), rate))
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 16000) <= 1
    assert dominant_hz(samples) == pytest.approx(TONE_HZ, abs=1.0)
    middle = samples[1000:-1000]  # away from the resampler's edges
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_a_rate_coprime_with_16k_resamples_in_little_memory(tmp_path):
    """torchaudio's dense kernel for 11127 -> 16000 Hz is 16000 x 11127 entries (3.4 GB of peak
    memory and 6 s per file before); a fresh process measures the peak."""
    path = write(tmp_path / "x.wav", tone(2.0, 11127), 11127)
    script = textwrap.dedent(
        f"""
        import resource
        from psl.data.audio import decode
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        decode({str(path)!r})
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """
    )
    grown_mb = int(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout)
    assert grown_mb < 200


def test_digital_silence_is_kept(tmp_path):
    silent = write(tmp_path / "silent.wav", np.zeros(16000), 16000, subtype="PCM_16")
    classes = ClassList(("a",), ("A",))
    result = ingest([SourceClip("s", "silent.wav", silent, [0])], tmp_path / "out", classes, progress=False)
    assert result.skipped == []
    assert np.array_equal(result.store.read(0), np.zeros(16000, np.int16))


def test_a_file_too_long_is_skipped_from_its_header_alone(tmp_path, monkeypatch):
    # 700 s at 1 kHz, 8-bit: a long file that is small on disk.
    path = write(tmp_path / "long.wav", np.zeros(700_000), 1000, subtype="PCM_U8")

    def no_samples(*args, **kwargs):
        raise AssertionError("samples were read")

    monkeypatch.setattr(soundfile.SoundFile, "blocks", no_samples)
    monkeypatch.setattr(soundfile.SoundFile, "read", no_samples)
    with pytest.raises(AudioError, match=r"^too long: 700\.0 s > 600 s$"):
        decode(path, max_seconds=600)


def test_the_ingest_option_max_seconds_skips_longer_clips(tmp_path):
    layout = audioset_layout(tmp_path / "as")  # eval lists a 2.0-s and a 1.5-s clip
    result = ingest_audioset(
        [layout["eval"]], layout["classes"], layout["audio"], tmp_path / "out", max_seconds=1.8, progress=False
    )["eval"]
    assert result.store.ids == ["ytb0000001"]
    assert reasons(result.report) == {"yta0000000": "too long: 2.0 s > 1.8 s"}


@pytest.mark.parametrize(
    "name, make, reason",
    [
        (
            "inf",
            lambda p: write(p, np.where(np.arange(1600) == 5, np.inf, 0.1), 16000, subtype="FLOAT"),
            "contains NaN",
        ),
        ("no frames", lambda p: write(p, np.zeros(0), 16000, subtype="PCM_16"), "empty: no samples"),
        ("500 Hz", lambda p: write(p, tone(1.0, 500), 500), "unsupported sample rate: 500 Hz"),
        ("flac cut", lambda p: cut(write(p, tone(1.0, 44100), 44100, format="FLAC"), 0.5), "unreadable"),
        ("flac garbage", lambda p: garble(write(p, tone(1.0, 44100), 44100, format="FLAC")), "unreadable"),
    ],
)
def test_undecodable_files_raise_the_reason_for_the_report(tmp_path, name, make, reason):
    path = make(tmp_path / f"{name}.wav")
    with pytest.raises(AudioError, match=f"^{reason}"):
        decode(path)


def cut(path, fraction):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def garble(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 1024] = bytes(range(256)) * 4
    path.write_bytes(bytes(data))
    return path


def test_a_wav_cut_in_its_samples_keeps_the_samples_it_holds(tmp_path):
    # libsndfile reports the frames the file holds; the clip is as long as what was downloaded.
    path = cut(write(tmp_path / "x.wav", tone(1.0, 16000), 16000, subtype="PCM_16"), 0.5)
    samples = decode(path)
    assert 7900 < len(samples) < 8100
    assert dominant_hz(samples) == pytest.approx(TONE_HZ, abs=2.0)


# --- metadata ----------------------------------------------------------------------------------


def test_fsd50k_rows_naming_files_outside_the_dataset_are_skipped_unread(tmp_path):
    root = tmp_path / "fsd"
    fsd50k_layout(root)
    secret = write(tmp_path / "secret.wav", tone(1.0, 16000), 16000)
    dev = root / "FSD50K.ground_truth" / "dev.csv"
    append(dev, ["../../secret", "Bark", "/m/05tny_", "train"], [str(secret)[:-4], "Bark", "/m/05tny_", "train"])
    results = ingest_fsd50k(root, tmp_path / "out", workers=1, progress=False)
    skipped = reasons(results["train"].report)
    assert skipped["../../secret"] == "path escapes the dataset folder: ../../secret.wav"
    assert skipped[str(secret)[:-4]] == f"path escapes the dataset folder: {secret}"
    assert results["train"].store.ids == ["100", "101", "102"]


def test_fsdkaggle2018_rows_naming_files_outside_the_dataset_are_skipped_unread(tmp_path):
    root = tmp_path / "k"
    fsdkaggle2018_layout(root)
    # A real clip of the test folder, reached from the train table.
    train = root / "FSDKaggle2018.meta" / "train_post_competition.csv"
    append(train, ["../FSDKaggle2018.audio_test/t1.wav", "Bark", "1", "5", "CC0"])
    results = ingest_fsdkaggle2018(root, tmp_path / "out", val_fraction=0.25, workers=1, progress=False)
    skipped = reasons(results["train"].report) | reasons(results["val"].report)
    assert skipped["t1"] == "path escapes the dataset folder: ../FSDKaggle2018.audio_test/t1.wav"
    assert "t1" not in results["train"].store.ids + results["val"].store.ids


def test_repeated_clip_ids_are_skipped_within_and_across_splits(tmp_path):
    root = tmp_path / "fsd"
    fsd50k_layout(root)
    append(root / "FSD50K.ground_truth" / "dev.csv", ["100", "Bark", "/m/05tny_", "train"])
    append(root / "FSD50K.ground_truth" / "dev.csv", ["101", "Bark", "/m/05tny_", "val"])
    results = ingest_fsd50k(root, tmp_path / "out", workers=1, progress=False)
    assert reasons(results["train"].report)["100"] == "duplicate clip id"
    # val keeps a clip listed for train too (held-out splits first: psl.data.ingest)
    assert reasons(results["train"].report)["101"] == "duplicate clip id (kept in val)"
    assert results["train"].store.ids == ["100", "102"] and results["val"].store.ids == ["103", "101"]


def test_empty_label_fields_are_skipped_and_never_a_class(tmp_path):
    fsd = tmp_path / "fsd"
    fsd50k_layout(fsd)
    append(fsd / "FSD50K.ground_truth" / "dev.csv", ["102", "", "", "val"])
    assert reasons(ingest_fsd50k(fsd, tmp_path / "a", workers=1, progress=False)["val"].report)["102"] == "no labels"
    kaggle = tmp_path / "k"
    fsdkaggle2018_layout(kaggle)
    append(kaggle / "FSDKaggle2018.meta" / "train_post_competition.csv", ["00000002.wav", "", "1", "1", "CC0"])
    results = ingest_fsdkaggle2018(kaggle, tmp_path / "b", val_fraction=0.25, workers=1, progress=False)
    assert list(results["train"].store.classes.names) == ["Bark", "Cello", "Flute"]
    assert "no labels" in (reasons(results["train"].report) | reasons(results["val"].report)).values()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda text: text[: text.index("Bark", text.index("101"))], r"dev.csv:3: expected 4 fields"),  # cut mid-row
        (lambda text: text.replace("101,", "101,\xe9,"), r"dev.csv:3: not UTF-8 text"),
        (lambda text: text.replace("101,", '101,"'), r"dev.csv:3: expected 4 fields"),  # an unclosed quote
        (lambda text: text.replace(",train", ",test", 1), r"dev.csv:2: split must be train or val, got 'test'"),
    ],
)
def test_a_malformed_table_names_the_file_and_line(tmp_path, damage, message):
    root = tmp_path / "fsd"
    fsd50k_layout(root)
    dev = root / "FSD50K.ground_truth" / "dev.csv"
    dev.write_bytes(damage(dev.read_text()).encode("latin-1"))
    with pytest.raises(IngestError, match=message):
        ingest_fsd50k(root, tmp_path / "out", progress=False)


@pytest.mark.parametrize(
    "row, message",
    [
        ('yt1, nan, 10, "/m/a"', r"segments.csv:2: start/end seconds must be numbers with 0 <= start <= end"),
        ('yt1, 10, 5, "/m/a"', r"segments.csv:2: start/end seconds must be numbers with 0 <= start <= end"),
        (' , 0, 10, "/m/a"', r"segments.csv:2: the YTID is empty"),
    ],
)
def test_bad_audioset_segments_name_the_line(tmp_path, row, message):
    path = tmp_path / "balanced_train_segments.csv"
    path.write_text(f"# YTID, start_seconds, end_seconds, positive_labels\n{row}\n")
    with pytest.raises(IngestError, match=message):
        read_segments(path)


def test_a_byte_order_mark_is_read_past(tmp_path):
    # Spreadsheets save CSV with one; the header must still be found.
    classes = tmp_path / "classes.csv"
    classes.write_bytes(b"\xef\xbb\xbfindex,id,name\n0,a,A\n")
    assert ClassList.read_csv(classes) == ClassList(("a",), ("A",))
    root = tmp_path / "fsd"
    fsd50k_layout(root)
    dev = root / "FSD50K.ground_truth" / "dev.csv"
    dev.write_bytes(b"\xef\xbb\xbf" + dev.read_bytes())
    assert ingest_fsd50k(root, tmp_path / "out", workers=1, progress=False)["train"].store.ids == ["100", "101", "102"]


def test_tables_that_list_no_clip_are_an_error(tmp_path):
    root = tmp_path / "fsd"
    fsd50k_layout(root)
    for name in ("dev.csv", "eval.csv"):
        path = root / "FSD50K.ground_truth" / name
        path.write_text(path.read_text().splitlines()[0] + "\n")
    with pytest.raises(IngestError, match=r"no clips are listed in .*dev.csv or .*eval.csv"):
        ingest_fsd50k(root, tmp_path / "out", progress=False)


# --- what `psl data` prints --------------------------------------------------------------------


def broken_dev_table(tmp_path):
    fsd50k_layout(tmp_path / "fsd")
    dev = tmp_path / "fsd" / "FSD50K.ground_truth" / "dev.csv"
    dev.write_bytes(dev.read_bytes().replace(b"101,", b"101,\xff"))
    return ["data", "fsd50k", "--root", str(tmp_path / "fsd"), "--out", str(tmp_path / "out")], "dev.csv:3: not UTF-8"


def missing_class_list(tmp_path):
    segments = tmp_path / "eval_segments.csv"
    segments.write_text('yt1, 0, 10, "/m/a"\n')
    (tmp_path / "audio").mkdir()
    command = ["data", "audioset", "--segments", str(segments), "--labels", str(tmp_path / "nope.csv")]
    return command + ["--audio", str(tmp_path / "audio"), "--out", str(tmp_path / "out")], "nope.csv does not exist"


def damaged_store(tmp_path):
    fsd50k_layout(tmp_path / "fsd")
    store = ingest_fsd50k(tmp_path / "fsd", tmp_path / "out", workers=1, progress=False)["eval"].store
    (store.path / "store.json").write_text("[" * 5000)
    return ["data", "info", str(store.path)], "store.json: not a JSON object"


@pytest.mark.parametrize("make", [broken_dev_table, missing_class_list, damaged_store])
def test_psl_data_reports_bad_input_in_one_line_with_exit_code_2(tmp_path, make):
    command, expected = make(tmp_path)
    result = runner.invoke(app, command)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output


def test_a_store_with_truncated_audio_is_refused_when_opened(tmp_path):
    fsd50k_layout(tmp_path / "fsd")
    store = ingest_fsd50k(tmp_path / "fsd", tmp_path / "out", workers=1, progress=False)["train"].store
    audio = store.path / "audio.i16"
    audio.write_bytes(audio.read_bytes()[:-2])
    with pytest.raises(ValueError, match=r"audio.i16: holds \d+ bytes, the manifest says \d+ samples"):
        ClipStore(store.path)
