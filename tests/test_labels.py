"""The pseudo-label store: round trip, refusal of foreign data, resuming, and chunk targets
pooled from the stored frames against a float64 computation."""

import numpy as np
import pytest
import torch

from psl.data.datasets import ChunkDataset, RandomCropDataset
from psl.data.store import ClipStore
from psl.labels import LabelMismatch, LabelStore, PseudoLabelled, write_label_store
from psl.models.tagger import AudioTagger, ModelConfig

META = dict(
    teacher_run_id="", teacher_checkpoint_sha256="x", class_names=[], frame_seconds=0.32, frontend={}, created="now"
)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return AudioTagger(6, ModelConfig(width=0.25, n_mels=32)).eval()


class Counting(torch.nn.Module):
    """Wraps a teacher, counts the clips it sees, and can fail after some batches."""

    def __init__(self, teacher, fail_after=None):
        super().__init__()
        self.teacher, self.fail_after, self.clips, self.calls = teacher, fail_after, 0, 0

    @property
    def num_classes(self):
        return self.teacher.num_classes

    def forward(self, wave, lengths):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.clips += len(wave)
        return self.teacher(wave, lengths)


def test_round_trip_keyed_by_clip_id(teacher, tiny_root, tmp_path):
    store = ClipStore(tiny_root / "balanced")
    labels = write_label_store(teacher, store, tmp_path / "balanced", META, batch_size=5, progress=False)
    assert labels.ids == store.ids
    labels.check_matches(store)
    for i in (0, 7, 23):
        alone = teacher(torch.from_numpy(store.read(i))[None])
        frames = labels.frames(store.ids[i])
        assert frames.dtype == np.float16 and frames.shape == (int(alone.valid_frames[0]), 6)
        np.testing.assert_allclose(frames.astype(np.float32), alone.frames[0].detach().numpy(), atol=2e-3)


def test_labels_for_other_data_are_refused(teacher, tiny_root, tmp_path):
    labels = write_label_store(teacher, ClipStore(tiny_root / "val"), tmp_path / "val", META, progress=False)
    with pytest.raises(LabelMismatch, match="another version of .*balanced.*has no labels"):
        labels.check_matches(ClipStore(tiny_root / "balanced"))
    with pytest.raises(LabelMismatch, match="another class list"):
        labels.check_matches(ClipStore(tiny_root / "fsd" / "val"))


def test_interrupted_labelling_resumes_without_redoing_clips(teacher, tiny_root, tmp_path):
    store = ClipStore(tiny_root / "balanced")
    straight = write_label_store(teacher, store, tmp_path / "straight", META, batch_size=4, progress=False)
    first = Counting(teacher, fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        write_label_store(first, store, tmp_path / "resumed", META, batch_size=4, progress=False)
    with pytest.raises(FileNotFoundError, match="unfinished"):
        LabelStore(tmp_path / "resumed")
    second = Counting(teacher)
    resumed = write_label_store(second, store, tmp_path / "resumed", META, batch_size=4, progress=False)
    assert first.clips == 12 and second.clips == len(store) - 12
    assert (resumed.path / "frames.f16").read_bytes() == (straight.path / "frames.f16").read_bytes()
    assert resumed.ids == straight.ids


def float64_span_mean(frames: np.ndarray, start: float, length: float) -> np.ndarray:
    """Overlap-weighted mean of frames [t, t+1) over [start, start + length) clipped to the frames."""
    lo, hi = max(start, 0.0), min(start + length, len(frames))
    weights = np.array([max(0.0, min(t + 1, hi) - max(t, lo)) for t in range(len(frames))])
    return (weights[:, None] * frames.astype(np.float64)).sum(0) / weights.sum()


@pytest.mark.parametrize("length_s, hop_s", [(1.0, 1.0), (2.0, 1.0), (0.5, 0.7)])
def test_grid_targets_are_the_teacher_frames_over_each_chunk(teacher, tiny_root, tmp_path, length_s, hop_s):
    store = ClipStore(tiny_root / "balanced")
    labels = write_label_store(teacher, store, tmp_path / "l", META, progress=False)
    dataset = PseudoLabelled(ChunkDataset(store, length_s, hop_s), labels, length_s)
    for i in np.random.default_rng(0).choice(len(dataset), 12, replace=False):
        item = dataset[int(i)]
        frames = labels.frames(store.ids[item["clip"]])
        expected = float64_span_mean(frames, item["start"] / 16000 / 0.32, length_s / 0.32)
        np.testing.assert_allclose(item["psl"].numpy(), expected, atol=1e-6)


def test_random_crop_targets_cover_exactly_the_crop(teacher, tiny_root, tmp_path):
    store = ClipStore(tiny_root / "balanced")
    labels = write_label_store(teacher, store, tmp_path / "l", META, progress=False)
    dataset = PseudoLabelled(RandomCropDataset(store, 1.3, seed=5), labels, 1.3)
    for epoch in range(3):
        dataset.set_epoch(epoch)
        item = dataset[4]
        frames = labels.frames(store.ids[4])
        expected = float64_span_mean(frames, item["start"] / 16000 / 0.32, 1.3 / 0.32)
        np.testing.assert_allclose(item["psl"].numpy(), expected, atol=1e-6)


def test_isolated_mode_equals_the_teacher_on_each_chunk_alone(teacher, tiny_root, tmp_path):
    store = ClipStore(tiny_root / "balanced")
    labels = write_label_store(
        teacher, store, tmp_path / "iso", META, isolated=(1.5, 1.0), batch_size=7, progress=False
    )
    assert labels.meta["mode"] == "isolated"
    dataset = PseudoLabelled(ChunkDataset(store, 1.5, 1.0), labels, 1.5)
    for i in (0, 5, len(dataset) - 1):  # the last is a partial chunk at a clip's end
        item = dataset[i]
        alone = teacher(item["wave"][None], torch.tensor([item["length"]])).clip[0]
        torch.testing.assert_close(item["psl"], alone.detach().half().float())
    grid = ChunkDataset(store, 1.5, 1.0)
    assert labels.num_frames[0] == sum(1 for c in grid.chunks if c.clip == 0)


def test_top_k_store_keeps_each_frames_most_likely_classes(teacher, tiny_root, tmp_path):
    store = ClipStore(tiny_root / "val")
    dense = write_label_store(teacher, store, tmp_path / "dense", META, progress=False)
    sparse = write_label_store(teacher, store, tmp_path / "sparse", META, top_k=2, progress=False)
    assert (sparse.path / "frames.f16").stat().st_size == (dense.path / "frames.f16").stat().st_size * 4 // 6
    for cid in store.ids:
        full, kept = dense.frames(cid), sparse.frames(cid)
        chosen = kept != 0
        assert (chosen.sum(axis=1) <= 2).all()
        assert np.array_equal(kept[chosen], full[chosen])
        # Every kept value is at least every dropped one (ties in float16 may go either way).
        lowest_kept = np.where(chosen, kept.astype(np.float32), np.inf).min(axis=1)
        highest_dropped = np.where(chosen, -np.inf, full.astype(np.float32)).max(axis=1)
        assert (lowest_kept >= highest_dropped).all()


def test_sparsify_keeps_exactly_the_top_k():
    from psl.labels import sparsify

    dense = np.random.default_rng(0).random((50, 30))
    rows = sparsify(dense, 3)
    assert rows.shape == (50, 3)
    for r in range(50):
        assert set(rows["index"][r].tolist()) == set(np.argsort(-dense[r])[:3].tolist())
        np.testing.assert_array_equal(rows["value"][r], dense[r, rows["index"][r]].astype(np.float16))


@pytest.mark.parametrize("isolated", [None, (1.5, 1.0)], ids=["frames", "isolated"])
def test_reading_ahead_in_worker_processes_writes_the_same_store(teacher, tiny_root, tmp_path, isolated):
    store = ClipStore(tiny_root / "val")
    options = dict(isolated=isolated, batch_size=5, progress=False)
    alone = write_label_store(teacher, store, tmp_path / "alone", META, **options)
    ahead = write_label_store(teacher, store, tmp_path / "ahead", META, workers=2, **options)
    assert (ahead.path / "frames.f16").read_bytes() == (alone.path / "frames.f16").read_bytes()
    assert (ahead.path / "index.csv").read_text() == (alone.path / "index.csv").read_text()
