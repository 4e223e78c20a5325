"""`psl tag`: any audio file to tags and a timeline, streamed in windows."""

import json
import subprocess
import sys
import traceback

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn
from typer.testing import CliRunner

from psl.checkpoints import model_snapshot
from psl.cli import app
from psl.frontend import LogMel
from psl.models.mobilenetv2 import TaggerOutput
from psl.models.tagger import AudioTagger, ModelConfig
from psl.tagging import AudioError, tag_file
from psl.trainer import save_atomic

FRAME_S = 0.32


class LoudnessTagger(nn.Module):
    """A stand-in tagger with a known answer: class 0's frame probability is 1 where the
    frame is loud (RMS > 0.1), class 1's is always 0.25."""

    def __init__(self) -> None:
        super().__init__()
        self.frontend = LogMel()

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor) -> TaggerOutput:
        per_frame = int(FRAME_S * 16000)
        count = int(lengths[0]) // per_frame
        rms = wave[0, : count * per_frame].reshape(count, per_frame).pow(2).mean(1).sqrt()
        frames = torch.stack([(rms > 0.1).float(), torch.full_like(rms, 0.25)], dim=1)[None]
        return TaggerOutput(frames.mean(1), frames, torch.zeros(1, 4), torch.tensor([count]))


def test_timeline_follows_the_file_clock_across_windows(tmp_path, rng):
    sr = 22050  # resampled to 16 kHz on the way in
    seconds = 25.0  # three 10-s windows
    wave = 0.01 * torch.randn(int(seconds * sr), generator=rng).numpy()
    loud = slice(int(12.0 * sr), int(14.0 * sr))  # loud in [12, 14) s: inside the second window
    wave[loud] = 0.5 * np.sin(2 * np.pi * 300 * np.arange(loud.stop - loud.start) / sr)
    path = tmp_path / "clip.wav"
    sf.write(path, np.stack([wave, wave], axis=1), sr)  # stereo, mixed to mono
    tags = tag_file(LoudnessTagger(), path, hop_s=1.0, threshold=0.5)
    assert tags.duration_s == pytest.approx(seconds, abs=1e-3)
    starts = [a for a, _, _ in tags.timeline.steps]
    assert starts == [float(s) for s in range(25)]
    flagged = [int(a) for a, _, step in tags.timeline.steps if step]
    # Frames are 0.32 s: the steps that hold a frame starting inside [12, 14) s are flagged.
    assert flagged == [11, 12, 13]  # step 11 holds the frame [11.84, 12.16)
    assert tags.scores[1] == pytest.approx(0.25)
    assert 0.05 < tags.scores[0] < 0.1  # ~2 of 25 s loud


def test_unreadable_empty_and_too_short_files_are_named(tmp_path):
    model = LoudnessTagger()
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(AudioError, match="text.wav: cannot read it as audio"):
        tag_file(model, tmp_path / "text.wav")
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty.wav: holds no audio"):
        tag_file(model, tmp_path / "empty.wav")
    sf.write(tmp_path / "short.wav", np.zeros(800, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="short.wav: too short to tag"):
        tag_file(model, tmp_path / "short.wav")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small untrained tagger saved as a trainer checkpoint, with its class names."""
    cfg = ModelConfig(width=0.25, n_mels=32)
    path = tmp_path_factory.mktemp("model") / "best.pt"
    snapshot = model_snapshot(cfg, ["a", "b", "c"], ["Alarm", "Bird", "Cello"])
    save_atomic({"model": AudioTagger(3, cfg).state_dict(), "config": snapshot}, path)
    return path


def psl_tag(*args: str) -> subprocess.CompletedProcess:
    """`psl tag ARGS` as the command runs, but in this process (a process of its own costs
    seconds): its exit code, stdout and stderr (with the traceback of an exception)."""
    result = CliRunner().invoke(app, ["tag", *args])
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["psl", "tag", *args], result.exit_code, result.stdout, stderr)


def test_cli_tags_wav_and_flac_as_json(tmp_path, checkpoint, rng):
    noise = 0.1 * torch.randn(int(3.5 * 44100), 2, generator=rng).numpy()
    sf.write(tmp_path / "a.flac", noise, 44100)
    sf.write(tmp_path / "b.wav", noise[:, 0], 8000)
    done = psl_tag(
        str(tmp_path / "a.flac"),
        str(tmp_path / "b.wav"),
        "--model",
        str(checkpoint),
        "--json",
        "--top",
        "2",
        "--threshold",
        "0",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["model"] == str(checkpoint)
    a, b = report["files"]
    assert a["duration_s"] == pytest.approx(3.5, abs=1e-3) and b["duration_s"] == pytest.approx(
        len(noise) / 8000, abs=1e-3
    )
    for item in (a, b):
        assert [set(t) for t in item["tags"]] == [{"name", "score"}] * 2
        assert {t["name"] for t in item["tags"]} <= {"Alarm", "Bird", "Cello"}
        steps = item["timeline"]
        assert steps[0]["start_s"] == 0 and steps[-1]["end_s"] == pytest.approx(item["duration_s"], abs=0.01)
        assert all(s["end_s"] == pytest.approx(t["start_s"]) for s, t in zip(steps, steps[1:]))
        assert all(len(s["tags"]) == 3 for s in steps)  # threshold 0: every class in every step
    text = psl_tag(str(tmp_path / "a.flac"), "--model", str(checkpoint), "--top", "2", "--threshold", "0")
    assert text.returncode == 0 and "a.flac  (3.5 s)" in text.stdout and "timeline (1-s steps" in text.stdout
    first_tag = f"  {a['tags'][0]['score']:.3f}  {a['tags'][0]['name']}"
    assert first_tag in text.stdout.splitlines()  # the text shows what --json does
    assert any(line.startswith("  0:00.0-0:01.0  ") and line.count(",") == 2 for line in text.stdout.splitlines())
    bad = psl_tag(str(tmp_path / "missing.ogg"), "--model", str(checkpoint))
    assert bad.returncode == 2 and "missing.ogg: cannot read it as audio" in bad.stderr


@pytest.mark.slow  # about 30 s: writes and tags 10 minutes of audio
def test_a_ten_minute_file_is_streamed_in_bounded_memory(tmp_path, checkpoint):
    """Peak memory of `psl tag` on 10 minutes of 44.1-kHz stereo stays near that of 10 s:
    the file (212 MB as float32) is never loaded whole."""
    rng = np.random.default_rng(0)
    for name, seconds in (("short.wav", 10), ("long.wav", 600)):
        with sf.SoundFile(tmp_path / name, "w", 44100, 2, "PCM_16") as f:
            for _ in range(seconds // 10):
                f.write((0.1 * rng.standard_normal((441000, 2))).astype(np.float32))
    peaks = {}
    for name in ("short.wav", "long.wav"):
        script = (
            "import resource, sys; from psl.cli import app; sys.argv = ['psl', 'tag', sys.argv[1], '--model', "
            "sys.argv[2]]\ntry: app()\nexcept SystemExit: pass\n"
            "print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / name), str(checkpoint)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        peaks[name] = int(done.stdout.rsplit("peak", 1)[1]) / 1024  # MiB
        assert f"{name}  ({600 if name == 'long.wav' else 10}.0 s)" in done.stdout
    assert peaks["long.wav"] - peaks["short.wav"] < 60, peaks
