"""MobileNetV2 tagger: shapes, decision-mean, embeddings, variable lengths."""

import pytest
import torch

from psl.bench.augment import torchaudio_spec_augment
from psl.models.mobilenetv2 import MobileNetV2
from psl.models.tagger import AudioTagger, MelNorm, ModelConfig, spec_augment


def test_paper_size_model_has_about_2_9_million_parameters():
    model = AudioTagger(527, ModelConfig(width=1.0))
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(2.9e6, rel=0.02)


@pytest.mark.parametrize("seconds", [2.0, 10.0, 30.0])
def test_shapes_for_clips_of_different_lengths(seconds, rng):
    model = AudioTagger(10, ModelConfig(width=0.25, n_mels=32)).eval()
    wave = (torch.randn(2, int(seconds * 16000), generator=rng) * 3000).to(torch.int16)
    out = model(wave)
    frames = MobileNetV2.output_frames(1 + wave.shape[1] // 160)
    assert out.clip.shape == (2, 10) and out.frames.shape == (2, frames, 10)
    assert out.embedding.shape == (2, model.backbone.embedding_dim)
    assert out.clip.dtype == torch.float32 and ((out.clip >= 0) & (out.clip <= 1)).all()


def test_clip_score_is_the_mean_of_the_valid_frames(rng):
    model = AudioTagger(5, ModelConfig(width=0.25, n_mels=32)).eval()
    wave = torch.randn(3, 48000, generator=rng) * 0.1
    lengths = torch.tensor([48000, 16000, 8000])
    out = model(wave, lengths)
    for b in range(3):
        n = int(out.valid_frames[b])
        assert n == MobileNetV2.output_frames(1 + int(lengths[b]) // 160)
        torch.testing.assert_close(out.clip[b], out.frames[b, :n].mean(dim=0))


def test_a_padded_clip_scores_like_the_clip_alone(rng):
    """MelNorm ignores padding and the head averages only valid frames, so padding changes
    nothing but the (padded) frames the convolutions see at the clip's end."""
    model = AudioTagger(5, ModelConfig(width=0.25, n_mels=32)).eval()
    wave = torch.randn(1, 64000, generator=rng) * 0.1
    alone = model(wave)
    padded = model(torch.cat([wave, torch.zeros(1, 64000)], dim=1), torch.tensor([64000]))
    n = int(alone.valid_frames[0])
    torch.testing.assert_close(padded.frames[0, : n - 1], alone.frames[0, : n - 1], atol=1e-4, rtol=1e-3)


def test_embedding_is_the_mean_frame_feature(rng):
    model = AudioTagger(4, ModelConfig(width=0.25, n_mels=32)).eval()
    wave = torch.randn(2, 32000, generator=rng) * 0.1
    spec, _ = model.spectrogram(wave, None)
    feats = model.backbone.frame_features(spec.unsqueeze(1))
    torch.testing.assert_close(model(wave).embedding, feats.mean(dim=1))


def test_melnorm_statistics_ignore_padded_frames(rng):
    norm = MelNorm(4, momentum=1.0)
    spec = torch.randn(2, 4, 10, generator=rng)
    padded = torch.cat([spec, torch.full((2, 4, 5), -100.0)], dim=2)
    out = norm(padded, torch.tensor([10, 10]))
    torch.testing.assert_close(norm.running_mean.squeeze(), spec.mean(dim=(0, 2)))
    assert (out[:, :, 10:] == 0).all()


def test_training_mode_runs_specaugment_and_backprop(rng):
    model = AudioTagger(3, ModelConfig(width=0.25, n_mels=32)).train()
    wave = torch.randn(2, 32000, generator=rng) * 0.1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(wave)
    out.clip.sum().backward()
    assert all(p.grad is not None for p in model.backbone.parameters() if p.requires_grad)


def _runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a 1-D bool tensor."""
    padded = torch.cat([torch.tensor([False]), mask, torch.tensor([False])]).int()
    edges = torch.nonzero(padded.diff()).flatten().tolist()
    return [(a, b - a) for a, b in zip(edges[::2], edges[1::2])]


# torchaudio's masking is `psl bench augment`'s baseline: it must draw the same kind of masks.
@pytest.mark.parametrize("augment", [spec_augment, torchaudio_spec_augment], ids=["psl", "torchaudio"])
def test_specaugment_zeroes_at_most_the_configured_stripes_of_each_clip(rng, augment):
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=rng)))
    cfg = ModelConfig(time_masks=2, time_mask_frames=30, freq_masks=2, freq_mask_bands=6)
    spec = torch.rand(64, 40, 200) + 1.0  # nothing is zero before masking
    out = augment(spec, cfg)
    zero = out == 0
    assert torch.equal(out[~zero], spec[~zero])  # what is not masked is untouched
    differs = 0
    for clip in zero:
        frames, bands = clip.all(dim=0), clip.all(dim=1)  # masked columns and rows
        assert torch.equal(clip, frames[None, :] | bands[:, None])  # nothing but whole stripes
        for stripes, width in ((_runs(frames), 30), (_runs(bands), 6)):
            assert len(stripes) <= 2 and all(length <= 2 * width for _, length in stripes)
            assert sum(length for _, length in stripes) <= 2 * width
        differs += not torch.equal(clip, zero[0])
    assert differs > 0  # every clip draws its own masks


def test_specaugment_widths_are_uniform_up_to_the_largest_and_land_anywhere(rng):
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=rng)))
    widest, frames, clips = 9, 50, 20000
    cfg = ModelConfig(time_masks=1, time_mask_frames=widest, freq_masks=0)
    zero = spec_augment(torch.ones(clips, 1, frames), cfg)[:, 0] == 0
    widths = zero.sum(dim=1)
    counts = torch.bincount(widths, minlength=widest + 1)
    assert len(counts) == widest + 1  # never wider than time_mask_frames
    expected = clips / (widest + 1)
    assert (counts - expected).abs().max() < 5 * expected**0.5  # each width 0..9 equally likely
    covered = zero.any(dim=0)
    assert covered.all()  # the first and the last frames are masked too
    assert all(len(_runs(row)) <= 1 for row in zero[:200])


def test_specaugment_without_masks_returns_the_input():
    spec = torch.rand(3, 16, 40)
    assert torch.equal(spec_augment(spec, ModelConfig(time_masks=0, freq_masks=0)), spec)
