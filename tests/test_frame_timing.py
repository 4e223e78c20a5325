"""Where each output frame of the tagger sits in time, measured, and what the label store,
the chunk labels and the tagging timeline make of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psl.labels import frame_position, span_targets
from psl.models.tagger import AudioTagger, ModelConfig

FRAME_S = 0.32


@pytest.mark.parametrize("width", [0.35, 1.0])
def test_output_frame_t_is_centred_on_t_frame_lengths(width):
    """The centre of mass of each output frame's sensitivity to the log-mel input (its
    effective receptive field) lies at t * 0.32 s, not at the middle of [0.32 t, 0.32 (t+1))."""
    torch.manual_seed(0)
    model = AudioTagger(4, ModelConfig(width=width))
    with torch.no_grad():  # batch-norm statistics of real activations
        for _ in range(2):
            model(torch.randn(4, 160000) * 0.1)
    model.eval()
    spec = model.spectrogram(torch.randn(1, 160000) * 0.1, None)[0].detach().requires_grad_()
    features = model.backbone.frame_features(spec.unsqueeze(1).contiguous(memory_format=torch.channels_last))
    input_times = torch.arange(spec.shape[-1]) * 0.01  # log-mel frame j is centred on sample 160 j
    for t in (5, 10, 15, 20, 25):
        (grad,) = torch.autograd.grad(features[0, t].pow(2).sum(), spec, retain_graph=True)
        weight = grad[0].pow(2).sum(0)
        centre = float((weight * input_times).sum() / weight.sum())
        assert centre == pytest.approx(t * FRAME_S, abs=0.08)  # half a frame is 0.16 s
        assert frame_position(centre, FRAME_S) == pytest.approx(t + 0.5, abs=0.25)  # the middle of [t, t+1)


class OneClipLabels:
    """A label store of one clip whose frames are a perfect teacher's for one event."""

    def __init__(self, onset: float, offset: float, seconds: float = 10.0) -> None:
        centres = np.arange(int(seconds / FRAME_S) + 1) * FRAME_S
        overlap = np.clip(np.minimum(centres + FRAME_S / 2, offset) - np.maximum(centres - FRAME_S / 2, onset), 0, None)
        self._frames = (overlap / FRAME_S)[:, None].astype(np.float16)
        self.frame_seconds = FRAME_S
        self.meta = {"frame_seconds": FRAME_S, "mode": "frames"}

    def frames(self, clip_id: str) -> np.ndarray:
        return self._frames


@pytest.mark.parametrize("length", [2.0, 1.0, 0.5])
def test_chunk_labels_of_a_perfect_teacher_match_the_events(length, rng):
    """Events at random on/offsets; frames as a perfect teacher with the measured frame
    geometry gives them; each chunk's pooled label must be the fraction of the chunk the
    event covers. (Read as covering [0.32 t, 0.32 (t+1)), as the store did, the same frames
    give 9x the mean error on 2-s chunks and exceed the worst-case bound.)"""
    generator = np.random.default_rng(int(torch.randint(2**31, (1,), generator=rng)))
    errors = []
    for _ in range(100):
        onset = generator.uniform(0, 9)
        offset = min(10.0, onset + generator.uniform(0.2, 4.0))
        labels = OneClipLabels(onset, offset)
        for start in np.arange(0.0, 10.0, length):
            truth = max(0.0, min(offset, start + length) - max(onset, start)) / length
            errors.append(abs(float(span_targets(labels, "clip", float(start), length)[0]) - truth))
    # A chunk edge inside a frame can blur its label by half a frame at most.
    assert max(errors) <= FRAME_S / length / 2
    assert np.mean(errors) <= 0.01 * max(1.0, 1.0 / length)
