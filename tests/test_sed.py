"""Event-level scores (psl.sed) on hand-made clips whose answers are worked out by hand."""

from types import SimpleNamespace

import numpy as np
import pytest

from psl.sed import (
    SCENARIO_1,
    SCENARIO_2,
    Events,
    FrameScores,
    PsdsSettings,
    merge_overlapping,
    psds,
    sed_scores,
    segment_f1,
)

STEP = 0.32  # seconds per output frame; frame t covers [(t - 1/2) STEP, (t + 1/2) STEP)


def events(*rows) -> Events:
    """rows of (clip, class, onset, offset)."""
    return Events.from_records(SimpleNamespace(clip=c, label=k, onset=a, offset=b) for c, k, a, b in rows)


def frames_of(durations, classes: int, spans) -> list[np.ndarray]:
    """Frame probabilities of clips of `durations`: zero but for `spans` of (clip, class,
    first frame, end frame, probability)."""
    out = [np.zeros((int(np.ceil(d / STEP)), classes), dtype=np.float32) for d in durations]
    for clip, k, first, end, p in spans:
        out[clip][first:end, k] = p
    return out


def scores_of(durations, classes: int, spans) -> FrameScores:
    return FrameScores.from_clips(frames_of(durations, classes, spans), durations, STEP)


def test_segment_f1_by_hand():
    """One 10-s clip, 1-s segments. Class 0: truth [1.5, 3.2) covers segments 1-3; frames
    0-4 ([0, 1.44)) touch segments 0-1: TP 1, FP 1, FN 2, F1 0.4. Class 1: truth [5, 6) is
    segment 5; frames 16-18 ([4.96, 5.92)) touch 4-5: TP 1, FP 1, F1 2/3. Class 2 has no
    truth; frame 7 ([2.08, 2.4)) is one FP segment (2): micro counts it, macro leaves the
    class out. Micro: TP 2, FP 3, FN 2."""
    scores = scores_of([10.0], 3, [(0, 0, 0, 5, 0.9), (0, 1, 16, 19, 0.6), (0, 2, 7, 8, 0.5)])
    truth = events((0, 0, 1.5, 3.2), (0, 1, 5.0, 6.0))
    got = segment_f1(scores, truth, threshold=0.5, resolution=1.0)
    assert got["segment_f1_micro"] == pytest.approx(4 / 9)
    assert got["segment_f1_macro"] == pytest.approx((0.4 + 2 / 3) / 2)
    assert got["segment_precision_micro"] == pytest.approx(2 / 5)
    assert got["segment_recall_micro"] == pytest.approx(2 / 4)
    # Below the threshold nothing is detected.
    assert segment_f1(scores, truth, threshold=0.95)["segment_f1_micro"] == 0.0


def test_segments_stop_at_the_clip_end():
    """A 9.5-s clip has segments 0-9; its frame 29, [9.12, 9.44), touches segment 9 only."""
    scores = scores_of([9.5], 1, [(0, 0, 29, 30, 1.0)])
    assert segment_f1(scores, events((0, 0, 9.3, 9.5)))["segment_f1_micro"] == 1.0


# Two 10-s clips, three classes, events spanning frames [a, b) exactly.
GRID_EVENTS = [(0, 0, 2, 10), (0, 1, 5, 9), (1, 2, 2, 20), (1, 0, 25, 31)]


def grid_truth() -> Events:
    return events(*[(c, k, (a - 0.5) * STEP, (b - 0.5) * STEP) for c, k, a, b in GRID_EVENTS])


def test_a_perfect_detector_scores_one_and_a_late_one_less():
    perfect = scores_of([10.0, 10.0], 3, [(c, k, a, b, 1.0) for c, k, a, b in GRID_EVENTS])
    got = sed_scores(perfect, grid_truth())
    assert got == {
        "segment_f1_micro": 1.0,
        "segment_f1_macro": 1.0,
        "segment_precision_micro": 1.0,
        "segment_recall_micro": 1.0,
        "psds1": 1.0,
        "psds2": 1.0,
    }
    # Two frames (0.64 s) late. Scenario 1 (70% criteria): class 0's first event is 6/8
    # covered (a hit), its second, the late detection cut by the clip end, only 4/6 (no
    # hit, but no false alarm either: 84% of the detection lies on it); class 1's 4-frame event is half missed (a false alarm, 180 per hour of
    # 20 s, beyond the 100 PSDS looks at); class 2's is a hit. TPR 0.5, 0, 1 at eFPR 0:
    # mean 0.5, std sqrt(1/6). Scenario 2's 10% criteria forgive all of it.
    late = scores_of([10.0, 10.0], 3, [(c, k, a + 2, b + 2, 1.0) for c, k, a, b in GRID_EVENTS])
    got = sed_scores(late, grid_truth())
    assert got["psds1"] == pytest.approx(0.5 - np.sqrt(1 / 6))
    assert got["psds2"] == 1.0
    assert 0.0 < got["segment_f1_micro"] < 1.0


def test_psds_of_one_false_alarm_by_hand():
    """Six 12-s clips (72 s: one false positive is 50 per hour). Class 0 is found perfectly.
    Class 1's event scores 0.4, a false alarm 0.6: at thresholds <= 0.4 TPR 1 and 50 FP/h,
    up to 0.6 TPR 0 and 50 FP/h, above TPR 0 and no FP. Its ROC is 0 up to 50 FP/h, 1
    after. Mean TPR: 0.5 on [0, 50), 1 on [50, 100): area 0.75. With alpha_st = 1 the
    spread (std 0.5) cancels the first half: 0.5."""
    durations = [12.0] * 6
    scores = scores_of(durations, 2, [(0, 0, 3, 10, 1.0), (1, 1, 6, 12, 0.4), (4, 1, 20, 25, 0.6)])
    truth = events((0, 0, 3 * STEP, 10 * STEP), (1, 1, 6 * STEP, 12 * STEP))
    assert psds(scores, truth, SCENARIO_1) == pytest.approx(0.5)
    plain = PsdsSettings(dtc=0.7, gtc=0.7, cttc=None, alpha_ct=0.0, alpha_st=0.0)
    assert psds(scores, truth, plain) == pytest.approx(0.75)


def test_cross_triggers_raise_the_effective_fp_rate():
    """Twelve 12-s clips (144 s), class 1 true and detected everywhere (144 s of truth).
    Class 0's event scores 0.5; a class-0 false alarm at 0.6 lies on class 1's truth: 25
    FP/h and a cross-trigger rate of 25 per hour of class 1. eFPR = 25 + alpha_ct * 25.
    alpha_st = 0: area 0.5 * eFPR + (100 - eFPR) -> 0.875 (alpha_ct 0), 0.8125 (0.5);
    scenario 2 (alpha_ct 0.5, alpha_st 1): 100 - 37.5 -> 0.625."""
    durations = [12.0] * 12
    spans = [(c, 1, 0, 38, 1.0) for c in range(12)] + [(0, 0, 2, 10, 0.5), (1, 0, 5, 10, 0.6)]
    scores = scores_of(durations, 2, spans)
    truth = events(*[(c, 1, 0.0, 12.0) for c in range(12)], (0, 0, 2 * STEP, 10 * STEP))
    for alpha_ct, expected in ((0.0, 0.875), (0.5, 0.8125)):
        settings = PsdsSettings(dtc=0.1, gtc=0.1, cttc=0.3, alpha_ct=alpha_ct, alpha_st=0.0)
        assert psds(scores, truth, settings) == pytest.approx(expected)
    assert psds(scores, truth, SCENARIO_2) == pytest.approx(0.625)


def test_overlapping_events_of_a_class_are_merged_and_clipped():
    merged = merge_overlapping(events((0, 1, 2.0, 4.0), (0, 1, 3.0, 5.0), (0, 1, 5.0, 6.0), (0, 2, 8.0, 11.0)), [10.0])
    rows = sorted(zip(merged.clip, merged.label, merged.onset, merged.offset))
    # Touching events stay apart (they do not overlap); the last one is cut at the clip end.
    assert rows == [(0, 1, 2.0, 5.0), (0, 1, 5.0, 6.0), (0, 2, 8.0, 10.0)]


def test_frames_beyond_a_clip_or_padding_never_detect():
    """A 3-s clip padded to the 10-s clip's 32 frames: its padding scores 1 but is ignored."""
    frames = [np.ones((32, 1), np.float32), np.ones((32, 1), np.float32)]
    frames[1] = frames[1][:10]  # 10 frames cover 3.2 s of a 3-s clip
    scores = FrameScores.from_clips(frames, [10.0, 3.0], STEP)
    assert scores.frame_len[1, 9] == pytest.approx(3.0 - 8.5 * STEP) and (scores.frame_len[1, 10:] == 0).all()
    truth = events((0, 0, 0.0, 10.0), (1, 0, 0.0, 3.0))
    assert sed_scores(scores, truth)["psds1"] == 1.0
