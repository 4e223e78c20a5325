"""`psl tag`: tags and a timeline for any audio file, for people who just want tags.

A file is read in windows (any rate and channel count libsndfile reads), mixed to mono,
resampled to the model's 16 kHz and tagged window by window, so that an hour of audio
never sits in memory at once. The file's tag scores are the mean of the model's frame
probabilities over the whole file (the decision-mean head's own clip score, extended to
any length); the timeline gives, per step of `hop` seconds, the classes whose frame
probability reaches the threshold in that step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


from psl.data.audio import resample
from psl.errors import AudioError
from psl.models.mobilenetv2 import TIME_STRIDE
from psl.models.tagger import AudioTagger
from psl.precision import autocast

WINDOW_SECONDS = 10.0  # the clip length the models are trained on


@dataclass
class Timeline:
    """Classes at or above the threshold per step: (start_s, end_s, [(class index, score)])."""

    steps: list[tuple[float, float, list[tuple[int, float]]]] = field(default_factory=list)


@dataclass
class FileTags:
    path: Path
    duration_s: float
    scores: np.ndarray  # [classes] mean frame probability over the file
    timeline: Timeline


def read_windows(path: Path, window_s: float, sample_rate: int) -> Iterator[torch.Tensor]:
    """Consecutive mono windows of `window_s` seconds at `sample_rate` (the last one shorter)."""
    try:
        audio = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"{path}: cannot read it as audio ({error})") from None
    with audio:
        if audio.frames == 0:
            raise AudioError(f"{path}: holds no audio samples")
        try:
            yield from _mono_windows(audio, window_s, sample_rate, path)
        except (sf.LibsndfileError, RuntimeError) as error:  # e.g. a file damaged past its header
            raise AudioError(f"{path}: cannot read it to the end ({error})") from None


def _mono_windows(audio: sf.SoundFile, window_s: float, sample_rate: int, path: Path) -> Iterator[torch.Tensor]:
    block = max(1, round(window_s * audio.samplerate))
    for native in audio.blocks(blocksize=block, dtype="float32", always_2d=True):
        if not np.isfinite(native).all():
            raise AudioError(f"{path}: contains NaN or Inf samples")
        # As ingest does: float files may hold any finite value, and beyond full scale it is
        # clipping anyway; clipped first, the downmix, the resampler and the log-mel power
        # cannot overflow into Inf and NaN scores.
        mono = np.clip(native, -1.0, 1.0).mean(axis=1, dtype=np.float32)
        yield torch.from_numpy(resample(mono, audio.samplerate, sample_rate))


@torch.no_grad()
def tag_file(
    model: AudioTagger,
    path: Path,
    *,
    hop_s: float = 1.0,
    threshold: float = 0.5,
    device: torch.device | str = "cpu",
    amp: str = "fp32",
) -> FileTags:
    """The file's tag scores and timeline (see the module's docstring)."""
    model.eval()
    sample_rate = model.frontend.sample_rate
    frame_s = TIME_STRIDE * model.frontend.hop_length / sample_rate
    total, frames_seen, samples_seen = 0.0, 0, 0
    steps = _Steps(hop_s, threshold)
    for wave in read_windows(Path(path), WINDOW_SECONDS, sample_rate):
        start_s = samples_seen / sample_rate
        samples_seen += len(wave)
        if len(wave) < frame_s * sample_rate:  # a tail shorter than one output frame
            continue
        with autocast(torch.device(device), amp):
            out = model(wave[None].to(device), torch.tensor([len(wave)], device=device))
        frames = out.frames[0, : int(out.valid_frames[0])].float().cpu().numpy()
        if not np.isfinite(frames).all():  # a broken model, not the audio: never printed as NaN scores
            raise AudioError(f"{path}: the model's scores are NaN or Inf at {start_s:.1f} s; the checkpoint is broken")
        total = total + frames.sum(axis=0)
        frames_seen += len(frames)
        for k, probabilities in enumerate(frames):  # frame k is centred on start + k * frame_s
            steps.add(start_s + k * frame_s, probabilities)
    if frames_seen == 0:
        raise AudioError(f"{path}: too short to tag ({samples_seen / sample_rate:.3f} s; at least {frame_s:.2f} s)")
    duration = samples_seen / sample_rate
    return FileTags(Path(path), duration, total / frames_seen, steps.finish(duration))


class _Steps:
    """Folds frame probabilities into timeline steps of `hop_s` by the frames' centres (frame k
    is centred on k * frame_s: see psl.labels), so windows of any length line up with the
    file's clock."""

    def __init__(self, hop_s: float, threshold: float) -> None:
        self.hop_s, self.threshold = hop_s, threshold
        self.timeline = Timeline()
        self.index, self.peak = None, None

    def add(self, time_s: float, probabilities: np.ndarray) -> None:
        index = int(time_s // self.hop_s)
        if index != self.index:
            self._flush(None)
            self.index, self.peak = index, probabilities.copy()
        else:
            np.maximum(self.peak, probabilities, out=self.peak)

    def finish(self, duration_s: float) -> Timeline:
        self._flush(duration_s)
        return self.timeline

    def _flush(self, duration_s: float | None) -> None:
        if self.index is None:
            return
        start = self.index * self.hop_s
        end = start + self.hop_s if duration_s is None else min(start + self.hop_s, duration_s)
        above = np.nonzero(self.peak >= self.threshold)[0]
        tags = sorted(((int(c), float(self.peak[c])) for c in above), key=lambda t: -t[1])
        self.timeline.steps.append((start, end, tags))


def tag_files(
    model: AudioTagger, names: list[str], paths: list[Path], *, top: int, hop_s: float, threshold: float
) -> Iterator[dict]:
    """Each file's `as_json` result, in order, as soon as it is tagged; a file that cannot be
    read is `{"file": ..., "error": ...}` and the other files are still tagged."""
    for path in paths:
        try:
            tags = tag_file(model, path, hop_s=hop_s, threshold=threshold)
        except AudioError as error:
            yield {"file": str(path), "error": str(error)}
            continue
        yield as_json(tags, names, top)


def as_json(tags: FileTags, names: list[str], top: int) -> dict:
    """One file's result as `psl tag --json` prints it: the `top` tags and the timeline."""
    order = tags.scores.argsort()[::-1][:top]
    return {
        "file": str(tags.path),
        "duration_s": round(tags.duration_s, 3),
        "tags": [{"name": names[c], "score": round(float(tags.scores[c]), 4)} for c in order],
        "timeline": [
            {
                "start_s": round(a, 2),
                "end_s": round(b, 2),
                "tags": [{"name": names[c], "score": round(p, 4)} for c, p in step],
            }
            for a, b, step in tags.timeline.steps
        ],
    }


def as_text(result: dict, hop_s: float, threshold: float) -> str:
    """One file's `as_json` result as `psl tag` prints it: the tags, then the timeline."""
    lines = [f"{result['file']}  ({result['duration_s']:.1f} s)"]
    lines += [f"  {item['score']:.3f}  {item['name']}" for item in result["tags"]]
    lines.append(f"  timeline ({hop_s:g}-s steps, frame score >= {threshold:g}):")
    for step in result["timeline"]:
        listed = ", ".join(f"{t['name']} {t['score']:.2f}" for t in step["tags"]) or "-"
        lines.append(f"  {_clock(step['start_s'])}-{_clock(step['end_s'])}  {listed}")
    return "\n".join(lines)


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}"
