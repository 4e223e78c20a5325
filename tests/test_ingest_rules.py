"""The rules every ingest follows beyond decoding: a clip lands in one split (eval first), a store is
never silently stale (reruns with other inputs are refused, `--force` rebuilds), a full disk is named
in one line, and no file outside the audio folder is read, nor one of two that fit a clip."""

import csv
import errno
import json
import os
import subprocess
import sys

import pytest
import soundfile
from typer.testing import CliRunner

from layouts import audioset_layout, fsd50k_layout, fsdkaggle2018_layout, tone, write_good
from psl.cli import app
from psl.data.audioset import ingest_audioset
from psl.data.fsd import ingest_fsd50k, ingest_fsdkaggle2018
from psl.data.ingest import IngestError
from psl.data.ragged import partial_dir
from psl.data.store import StoreWriter
from test_bad_input import append, reasons

runner = CliRunner()


def fsd(tmp_path, **options):
    return ingest_fsd50k(tmp_path / "fsd", tmp_path / "out", workers=1, progress=False, **options)


def edit_rows(path, edit):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(edit(rows))


def add_segment(path, ytid, mids):
    with open(path, "a") as f:
        f.write(f'{ytid}, 30.000, 40.000, "{mids}"\n')


# --- one split per clip ------------------------------------------------------------------------


def test_audioset_keeps_a_clip_of_two_segment_files_in_eval_then_balanced(tmp_path):
    layout = audioset_layout(tmp_path / "as")  # eval_segments.csv repeats two balanced clips
    unbalanced = tmp_path / "as" / "unbalanced_train_segments.csv"
    unbalanced.write_text("# YTID, start_seconds, end_seconds, positive_labels\n")
    add_segment(unbalanced, "ytc0000002", "/m/0jbk")
    add_segment(unbalanced, "ytfull", "/m/0jbk")
    write_good(layout["audio"] / "ytfull.wav", 1.0, 16000, 1)
    results = ingest_audioset(
        [layout["balanced"], unbalanced, layout["eval"]],
        layout["classes"],
        layout["audio"],
        tmp_path / "out",
        val_fraction=0.25,
        workers=1,
        progress=False,
    )
    assert results["eval"].store.ids == ["yta0000000", "ytb0000001"]
    training = set(results["balanced"].store.ids) | set(results["val"].store.ids)
    assert training == {"ytc0000002", "ytd0000003"}
    skipped = reasons(results["balanced"].report) | reasons(results["val"].report)
    assert skipped["yta0000000"] == skipped["ytb0000001"] == "duplicate clip id (kept in eval)"
    assert results["full"].store.ids == ["ytfull"]
    (kept_in,) = [s for s in ("balanced", "val") if "ytc0000002" in results[s].store.ids]
    assert reasons(results["full"].report) == {"ytc0000002": f"duplicate clip id (kept in {kept_in})"}


def test_fsd_keeps_a_clip_of_two_splits_in_eval_then_val(tmp_path):
    fsd50k_layout(tmp_path / "fsd")
    dev = tmp_path / "fsd" / "FSD50K.ground_truth" / "dev.csv"
    write_good(tmp_path / "fsd" / "FSD50K.dev_audio" / "5.wav", 1.0, 16000, 1)
    append(dev, ["5", "Bark", "/m/05tny_", "train"], ["100", "Bark", "/m/05tny_", "val"])
    results = fsd(tmp_path)
    assert results["eval"].store.ids == ["5"] and results["val"].store.ids == ["103", "100"]
    assert reasons(results["train"].report)["5"] == "duplicate clip id (kept in eval)"
    assert reasons(results["train"].report)["100"] == "duplicate clip id (kept in val)"
    kaggle = tmp_path / "k"
    fsdkaggle2018_layout(kaggle)
    write_good(kaggle / "FSDKaggle2018.audio_train" / "t1.wav", 1.0, 16000, 1)
    append(kaggle / "FSDKaggle2018.meta" / "train_post_competition.csv", ["t1.wav", "Bark", "1", "9", "CC0"])
    results = ingest_fsdkaggle2018(kaggle, tmp_path / "k-out", val_fraction=0.25, workers=1, progress=False)
    assert results["eval"].store.ids == ["t1"]
    training = reasons(results["train"].report) | reasons(results["val"].report)
    assert training["t1"] == "duplicate clip id (kept in eval)"


def test_a_split_from_an_earlier_run_that_would_share_clips_is_refused(tmp_path):
    layout = audioset_layout(tmp_path / "as")
    common = dict(workers=1, progress=False)
    ingest_audioset([layout["balanced"]], layout["classes"], layout["audio"], tmp_path / "out", **common)
    with pytest.raises(IngestError, match=r"out/balanced \(from an earlier run\) holds \d clips this run puts in eval"):
        ingest_audioset([layout["eval"]], layout["classes"], layout["audio"], tmp_path / "out", **common)


# --- no stale data -----------------------------------------------------------------------------


def test_a_rerun_with_the_same_inputs_changes_nothing(tmp_path):
    fsd50k_layout(tmp_path / "fsd")
    first = fsd(tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*")}
    again = fsd(tmp_path)
    assert {split: r.decoded for split, r in again.items()} == {"train": 0, "val": 0, "eval": 0}
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*")} == stamps
    assert again["train"].store.ids == first["train"].store.ids
    recorded = json.loads((tmp_path / "out" / "train" / "store.json").read_text())["built_from"]
    assert set(recorded["inputs"]) == {"vocabulary.csv", "dev.csv", "eval.csv"}
    assert recorded["options"] == {"min_seconds": 0.1, "max_seconds": 600.0}


def relabel_101(rows):
    return [["101", "Bark", "/m/05tny_", "train"] if row[0] == "101" else row for row in rows]


@pytest.mark.parametrize(
    "edit, said",
    [
        (relabel_101, "1 clips relabelled (e.g. '101')"),
        (lambda rows: [row for row in rows if row[0] != "101"], "1 clips removed (e.g. '101')"),
        (lambda rows: [*rows, ["6", "Bark", "/m/05tny_", "train"]], "1 clips added (e.g. '6')"),
    ],
)
def test_a_rerun_with_changed_lists_is_refused_and_force_rebuilds(tmp_path, edit, said):
    fsd50k_layout(tmp_path / "fsd")
    fsd(tmp_path)
    write_good(tmp_path / "fsd" / "FSD50K.dev_audio" / "6.wav", 1.0, 16000, 1)
    edit_rows(tmp_path / "fsd" / "FSD50K.ground_truth" / "dev.csv", edit)
    with pytest.raises(IngestError) as refused:
        fsd(tmp_path)
    message = str(refused.value)
    assert "out/train was built from other inputs (dev.csv changed; " in message and said in message, message
    assert "--force" in message and "out/eval" not in message  # eval's clips did not change
    rebuilt = fsd(tmp_path, force=True)
    assert rebuilt["train"].decoded == len(rebuilt["train"].store) + 4  # and the four broken files again
    assert fsd(tmp_path)["train"].decoded == 0


def test_changed_options_are_refused_and_a_store_that_records_nothing_is_kept_with_a_warning(tmp_path):
    fsd50k_layout(tmp_path / "fsd")
    fsd(tmp_path)
    with pytest.raises(IngestError, match=r"out/train was built from other inputs \(min_seconds was 0.1, now 0.05\)"):
        fsd(tmp_path, min_seconds=0.05)
    meta = tmp_path / "out" / "eval" / "store.json"
    meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "built_from"}))
    with pytest.warns(UserWarning, match=r"out/eval records no inputs \(built by an older psl\): kept as it is"):
        assert fsd(tmp_path)["eval"].decoded == 0


def test_the_cli_refuses_other_inputs_in_one_line_and_force_rebuilds(tmp_path):
    layout = audioset_layout(tmp_path / "as")
    command = ["data", "audioset", "--segments", str(layout["eval"]), "--labels", str(layout["classes"])]
    command += ["--audio", str(layout["audio"]), "--out", str(tmp_path / "out"), "--workers", "1"]
    assert runner.invoke(app, command).exit_code == 0
    layout["eval"].write_text(layout["eval"].read_text().replace('"/m/0jbk"', '"/m/09x0r"'))
    refused = runner.invoke(app, command)
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1, refused.output
    assert "eval_segments.csv changed; 1 clips relabelled (e.g. 'yta0000000')" in refused.output
    rebuilt = runner.invoke(app, [*command, "--force"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "eval: 2 clips" in rebuilt.output


def interrupted(tmp_path, monkeypatch):
    """An FSD50K ingest killed after its clips were written, before the train split was finished."""

    def killed(self, *args, **kwargs):
        self.close()
        raise KeyboardInterrupt

    fsd50k_layout(tmp_path / "fsd")
    with monkeypatch.context() as patch:
        patch.setattr(StoreWriter, "finish", killed)
        with pytest.raises(KeyboardInterrupt):
            fsd(tmp_path)
    assert partial_dir(tmp_path / "out" / "train").exists()


def test_an_interrupted_split_resumes_with_the_same_inputs(tmp_path, monkeypatch):
    interrupted(tmp_path, monkeypatch)
    result = fsd(tmp_path)["train"]
    assert result.resumed == 3 and result.decoded == 4 and result.store.ids == ["100", "101", "102"]


def test_an_interrupted_split_of_other_inputs_is_refused_then_rebuilt(tmp_path, monkeypatch):
    interrupted(tmp_path, monkeypatch)
    edit_rows(tmp_path / "fsd" / "FSD50K.ground_truth" / "dev.csv", relabel_101)
    with pytest.raises(IngestError, match=r"out/train was built from other inputs \(an interrupted run was building"):
        fsd(tmp_path)
    result = fsd(tmp_path, force=True)["train"]
    assert result.resumed == 0 and result.store.labels[1].tolist() == [0]


# --- a full disk -------------------------------------------------------------------------------


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def no_space_for_reports(fd):
    """os.fsync that fails as a full disk does for the skipped-clips report only."""
    if ".skipped.csv." in os.readlink(f"/proc/self/fd/{fd}"):
        no_space()
    return REAL_FSYNC(fd)


REAL_FSYNC = os.fsync


@pytest.mark.parametrize("where, named", [("fsync", ".train.partial"), ("report", "train.skipped.csv")])
def test_a_full_disk_at_the_end_of_an_ingest_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys, where, named):
    """A full disk often fails a file's write, close or fsync, with no file name in the error."""
    from psl.cli import run

    fsd50k_layout(tmp_path / "fsd")
    monkeypatch.setattr(os, "fsync", no_space if where == "fsync" else no_space_for_reports)
    command = ["psl", "data", "fsd50k", "--root", str(tmp_path / "fsd"), "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", [*command, "--workers", "1"])
    with pytest.raises(SystemExit) as ended:
        run()
    assert ended.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.replace("\r", "\n").splitlines() if "error:" in x]
    assert "No space left on device" in line and str(tmp_path / "out" / named) in line, line


def test_a_really_full_disk_names_the_folder(tmp_path, monkeypatch, capsys):
    """As tests/test_faults.py: a tmpfs, where one can be mounted (root); on a full one the lock
    file's first line already fails, in a write that names no file."""
    from psl.cli import run

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={disk / 'filler'}", "bs=4k", "count=8"], capture_output=True)
        fsd50k_layout(tmp_path / "fsd")
        command = ["psl", "data", "fsd50k", "--root", str(tmp_path / "fsd"), "--out", str(disk / "out")]
        monkeypatch.setattr(sys, "argv", command)
        with pytest.raises(SystemExit):
            run()
        (line,) = [x for x in capsys.readouterr().err.replace("\r", "\n").splitlines() if "error:" in x]
        assert "No space left on device" in line and str(disk / "out") in line, line
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_wav_written_on_a_full_disk_is_an_oserror_naming_the_file(tmp_path, monkeypatch):
    """libsndfile says only "System error." on a full disk; write_wav (for the synthetic FSD layout)
    says ENOSPC and the file."""
    from psl import files
    from psl.data import audio

    audio.write_wav(tmp_path / "ok.wav", tone(0.5, 16000), 16000)
    assert soundfile.info(tmp_path / "ok.wav").frames == 8000
    assert list(tmp_path.iterdir()) == [tmp_path / "ok.wav"]

    class FullFile:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        write = no_space

    monkeypatch.setattr(files, "open", lambda *args: FullFile(), raising=False)
    with pytest.raises(OSError, match=r"No space left on device: .*full\.wav") as caught:
        audio.write_wav(tmp_path / "full.wav", tone(0.5, 16000), 16000)
    assert caught.value.errno == errno.ENOSPC


# --- files outside the audio folder, and two files for one clip ---------------------------------


def test_links_out_of_the_audio_folder_are_skipped_unread(tmp_path):
    secret = tmp_path / "secret.wav"
    soundfile.write(secret, tone(1.0, 16000), 16000)
    fsd50k_layout(tmp_path / "fsd")
    (tmp_path / "fsd" / "FSD50K.dev_audio" / "101.wav").unlink()
    (tmp_path / "fsd" / "FSD50K.dev_audio" / "101.wav").symlink_to(secret)
    # A link that stays inside the audio folder is an ordinary file.
    (tmp_path / "fsd" / "FSD50K.dev_audio" / "102.wav").rename(tmp_path / "fsd" / "FSD50K.dev_audio" / "x.wav")
    (tmp_path / "fsd" / "FSD50K.dev_audio" / "102.wav").symlink_to("x.wav")
    results = fsd(tmp_path)
    assert reasons(results["train"].report)["101"] == f"path escapes the dataset folder: 101.wav links to {secret}"
    assert results["train"].store.ids == ["100", "102"]
    layout = audioset_layout(tmp_path / "as")
    linked = layout["audio"] / "ytd0000003_30.000_40.000.flac"
    linked.unlink()
    linked.symlink_to(secret)
    add_segment(layout["eval"], "ytd0000003", "/m/0jbk")
    result = ingest_audioset([layout["eval"]], layout["classes"], layout["audio"], tmp_path / "o", progress=False)
    expected = f"path escapes the dataset folder: ytd0000003_30.000_40.000.flac links to {secret}"
    assert reasons(result["eval"].report)["ytd0000003"] == expected
    assert result["eval"].store.ids == ["yta0000000", "ytb0000001"]


def test_two_audio_files_for_one_clip_are_skipped_as_ambiguous(tmp_path):
    layout = audioset_layout(tmp_path / "as")
    write_good(layout["audio"] / "other" / "yta0000000.flac", 1.0, 16000, 1)  # also in sub/ as .wav
    write_good(layout["audio"] / "ytb0000001.wav", 1.0, 16000, 1)  # beside ytb0000001_30.000_40.000.flac
    add_segment(layout["eval"], "ytd0000003", "/m/0jbk")
    result = ingest_audioset([layout["eval"]], layout["classes"], layout["audio"], tmp_path / "out", progress=False)
    skipped = reasons(result["eval"].report)
    assert skipped["yta0000000"] == "ambiguous: 2 audio files fit this clip: other/yta0000000.flac, sub/yta0000000.wav"
    expected = "ambiguous: 2 audio files fit this clip: ytb0000001.wav, ytb0000001_30.000_40.000.flac"
    assert skipped["ytb0000001"] == expected
    assert result["eval"].store.ids == ["ytd0000003"]
