"""The synthetic benchmark: determinism, sizes, the missing-label model, strong truth."""

import csv
import dataclasses
import math
from collections import defaultdict

import numpy as np
import pytest

from psl.config import profile_path
from psl.data.store import ClipStore
from psl.data.synth.config import load_synth_config
from psl.data.synth.generate import ALL_CLASSES, drop_probability, generate, plan_split

TINY = load_synth_config(profile_path("tiny"))


@pytest.fixture(scope="module")
def tiny(tiny_root):
    """The session's tiny benchmark (conftest.py: `generate` of the tiny profile, 2 workers)
    and its stores."""
    return tiny_root, {
        split: ClipStore(tiny_root / split) for split in [*TINY.splits, "fsd/train", "fsd/val", "fsd/eval"]
    }


def strong_rows(store: ClipStore):
    with open(store.path / "strong.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_split_sizes_and_classes(tiny):
    _, stores = tiny
    for split, count in TINY.splits.items():
        assert len(stores[split]) == count
        assert len(stores[split].classes) == TINY.num_classes
        assert (stores[split].num_samples == round(TINY.clip_seconds * 16000)).all()
    t = TINY.transfer
    assert [len(stores[f"fsd/{s}"]) for s in ("train", "val", "eval")] == [t.train_clips, t.val_clips, t.eval_clips]
    fsd_classes = stores["fsd/train"].classes.ids
    assert fsd_classes[: t.shared_classes] == stores["full"].classes.ids[: t.shared_classes]
    assert len(fsd_classes) == t.shared_classes + t.new_classes
    assert not set(fsd_classes[t.shared_classes :]) & set(stores["full"].classes.ids)


def test_transfer_clips_vary_in_length(tiny):
    _, stores = tiny
    seconds = np.concatenate([stores[f"fsd/{s}"].num_samples / 16000 for s in ("train", "val", "eval")])
    lo, hi = TINY.transfer.seconds
    assert seconds.min() >= lo - 0.01 and seconds.max() <= hi + 0.01
    assert seconds.std() > 0.2


def test_generation_is_deterministic_whatever_the_worker_count(tiny, tmp_path):
    root, stores = tiny
    cfg = dataclasses.replace(TINY, transfer=None, splits={"full": 20, "balanced": 12, "val": 6, "eval": 12})
    again = generate(cfg, tmp_path / "again", workers=1, progress=False)
    # A smaller profile with the same seed renders the same first clips.
    for split in ("full", "balanced", "eval"):
        for i in range(len(again[split])):
            assert np.array_equal(again[split].read(i), stores[split].read(i))
    again2 = generate(cfg, tmp_path / "again2", workers=2, progress=False)
    assert (tmp_path / "again2" / "full" / "audio.i16").read_bytes() == (
        tmp_path / "again" / "full" / "audio.i16"
    ).read_bytes()
    assert again2["balanced"].manifest_sha256 == again["balanced"].manifest_sha256


def test_another_seed_gives_other_data(tmp_path):
    cfg = dataclasses.replace(TINY, transfer=None, splits={"full": 4, "balanced": 6, "val": 2, "eval": 6})
    a = generate(cfg, tmp_path / "a", workers=1, progress=False)
    b = generate(dataclasses.replace(cfg, seed=1), tmp_path / "b", workers=1, progress=False)
    assert a["full"].manifest_sha256 != b["full"].manifest_sha256
    assert not np.array_equal(a["full"].read(0), b["full"].read(0))


def test_a_folder_refuses_other_settings(tiny):
    root, _ = tiny
    with pytest.raises(ValueError, match="other settings"):
        generate(dataclasses.replace(TINY, seed=7), root, workers=1, progress=False)


def test_strong_truth_agrees_with_weak_labels(tiny):
    _, stores = tiny
    for split in ("full", "balanced", "val", "eval"):
        store = stores[split]
        present = defaultdict(set)
        for row in strong_rows(store):
            present[row["clip_id"]].add(int(row["class_index"]))
            onset, offset = float(row["onset"]), float(row["offset"])
            assert 0.0 <= onset < offset <= TINY.clip_seconds + 1e-6
            weak = set(store.labels[store.index_of(row["clip_id"])].tolist())
            assert (int(row["class_index"]) in weak) == (row["in_weak_label"] == "1")
        for i, cid in enumerate(store.ids):
            weak = set(store.labels[i].tolist())
            assert weak, "every clip keeps at least one tag"
            assert weak <= present[cid], "every weak label has an event"
            if split == "eval":
                assert weak == present[cid], "eval labels are complete"


def test_balanced_split_is_class_balanced():
    counts = np.zeros(TINY.num_classes)
    for plan in plan_split(TINY, "balanced", TINY.splits["balanced"]):
        counts[plan.events[0].class_index] += 1
    assert counts.max() - counts.min() <= 1


def test_missing_label_rate_follows_the_configured_model():
    """Observed drops over many planned clips match a Monte Carlo run of the documented model
    (per-tag drop probabilities, then 'keep the most salient tag if all were dropped')."""
    cfg = dataclasses.replace(TINY, splits={"full": 3000, "balanced": 12, "val": 6, "eval": 12})
    rng = np.random.default_rng(0)
    expected, dropped, total = 0.0, 0, 0
    for plan in plan_split(cfg, "full", 3000):
        classes = sorted({e.class_index for e in plan.events})
        p = np.array(
            [
                drop_probability(
                    cfg.missing,
                    sum(e.offset - e.onset for e in plan.events if e.class_index == c),
                    max(e.snr_db for e in plan.events if e.class_index == c),
                )
                for c in classes
            ]
        )
        kept = rng.random((200, len(classes))) >= p
        kept[~kept.any(axis=1), int(p.argmin())] = True
        expected += (~kept).sum() / 200
        dropped += len(set(classes) - set(plan.weak))
        total += len(classes)
    rate, want = dropped / total, expected / total
    assert abs(rate - want) <= 4 * math.sqrt(want * (1 - want) / total)
    assert 0.1 < rate < 0.4


def test_drop_probability_grows_for_short_and_quiet_events():
    m = TINY.missing
    assert drop_probability(m, 0.2, 20.0) > drop_probability(m, 5.0, 20.0)
    assert drop_probability(m, 5.0, -5.0) > drop_probability(m, 5.0, 20.0)
    assert drop_probability(m, 0.0, -100.0) == pytest.approx(m.max_drop)


@pytest.mark.parametrize("seconds", [0.2, 3.0])
def test_every_event_class_renders(seconds):
    from psl.data.synth.events import render

    assert len(ALL_CLASSES) >= 24 + 6
    assert len({c[0] for c in ALL_CLASSES}) == len(ALL_CLASSES)
    rng = np.random.default_rng(0)
    for class_id, _, fn in ALL_CLASSES:
        for sr in (16000, 44100):
            x = render(fn, rng, int(seconds * sr), sr)
            assert x.shape == (int(seconds * sr),) and np.isfinite(x).all(), class_id
            assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3), class_id


def test_dataset_card(tiny):
    root, _ = tiny
    card = (root / "dataset_card.md").read_text()
    assert "missing-label rate" in card and "| eval |" in card
