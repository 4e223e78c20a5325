"""Generation of the synthetic benchmark.

Two stages per split. *Planning* (cheap, in this process) draws every clip's events
(class, onset, offset, SNR), its weak label (the true classes minus the dropped ones)
and thereby the strong truth. *Rendering* (costly, in a process pool) synthesises the
audio from the plan. Both are seeded per clip, so the result depends only on the config
and seed, not on the number of workers or on an interruption: a re-run resumes the
store writer and renders only the clips still missing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psl.config import as_dict
from psl.data.audio import SAMPLE_RATE, to_int16, write_wav
from psl.data.classes import ClassList
from psl.data.parallel import ordered_results
from psl.data.synth import WEAK_LABELS_FILE
from psl.data.synth.config import SynthConfig
from psl.data.synth.events import EVENT_CLASSES, TRANSFER_ONLY_CLASSES, render
from psl.data.store import ClipStore, StoreWriter, is_store
from psl.errors import ConfigError
from psl.files import write_atomic

ALL_CLASSES = EVENT_CLASSES + TRANSFER_ONLY_CLASSES
SPLIT_CODES = {
    "full": 1,
    "balanced": 2,
    "val": 3,
    "eval": 4,
    "transfer-train": 5,
    "transfer-val": 6,
    "transfer-eval": 7,
}
STRONG_FILE = "strong.csv"
CONFIG_FILE = "synth_config.json"
BACKGROUND_BANK_SECONDS = 40.0


@dataclass
class Event:
    class_index: int  # into ALL_CLASSES
    onset: float
    offset: float
    snr_db: float


@dataclass
class ClipPlan:
    clip_id: str
    seed: tuple[int, ...]
    seconds: float
    background_dbfs: float
    events: list[Event]
    weak: list[int]  # class indices into ALL_CLASSES kept in the weak label
    # `eval` only: the weak label under the missing-label model (`weak` is complete there).
    eval_weak: list[int] | None = None


def drop_probability(missing, duration: float, snr_db: float) -> float:
    short = math.exp(-duration / missing.short_seconds)
    quiet = 1.0 / (1.0 + math.exp((snr_db - missing.quiet_snr_db) / missing.quiet_width_db))
    return missing.max_drop * max(short, quiet)


def weak_label(events: list[Event], cfg: SynthConfig, rng: np.random.Generator, complete: bool) -> list[int]:
    """The classes present, minus those dropped by the missing-label model (never all of them)."""
    present = sorted({e.class_index for e in events})
    if complete:
        return present
    p = {}
    for c in present:
        mine = [e for e in events if e.class_index == c]
        p[c] = drop_probability(cfg.missing, sum(e.offset - e.onset for e in mine), max(e.snr_db for e in mine))
    kept = [c for c in present if rng.random() >= p[c]]
    # AudioSet clips always carry at least one tag: keep the most salient one.
    return kept or [min(present, key=lambda c: p[c])]


def _zipf(num_classes: int, skew: float) -> np.ndarray:
    w = 1.0 / np.arange(1, num_classes + 1) ** skew
    return w / w.sum()


def plan_split(cfg: SynthConfig, split: str, count: int) -> list[ClipPlan]:
    """Events and weak labels of one benchmark split. `balanced` and `eval` cycle through
    the classes for their first event (every class equally often); `full` draws all events
    from a skewed prior, as AudioSet's unbalanced set."""
    plans = []
    uniform = np.full(cfg.num_classes, 1.0 / cfg.num_classes)
    prior = _zipf(cfg.num_classes, cfg.full_class_skew) if split == "full" else uniform
    lo_s, hi_s = cfg.event_seconds
    for i in range(count):
        seed = (cfg.seed, SPLIT_CODES[split], i)
        rng = np.random.default_rng(seed)
        n_events = int(rng.integers(cfg.events_per_clip[0], cfg.events_per_clip[1] + 1))
        classes = list(rng.choice(cfg.num_classes, size=n_events, p=prior))
        if split != "full":
            classes[0] = i % cfg.num_classes
        events = []
        for c in classes:
            seconds = min(float(np.exp(rng.uniform(np.log(lo_s), np.log(hi_s)))), cfg.clip_seconds)
            onset = float(rng.uniform(0.0, cfg.clip_seconds - seconds))
            events.append(
                Event(int(c), round(onset, 4), round(onset + seconds, 4), round(float(rng.uniform(*cfg.snr_db)), 2))
            )
        background = float(rng.uniform(*cfg.background_dbfs))
        weak = weak_label(events, cfg, rng, complete=split == "eval")
        plan = ClipPlan(f"{split}-{i:06d}", seed, cfg.clip_seconds, background, events, weak)
        if split == "eval":
            plan.eval_weak = eval_weak_label(plan, cfg)
        plans.append(plan)
    return plans


def eval_weak_label(plan: ClipPlan, cfg: SynthConfig) -> list[int]:
    """The weak label of an `eval` clip, drawn from a stream of its own (the clip's seed + (2,);
    rendering uses + (1,)) so that the planned events and the audio stay what they were."""
    return weak_label(plan.events, cfg, np.random.default_rng(plan.seed + (2,)), complete=False)


def transfer_classes(cfg: SynthConfig) -> list[int]:
    """Indices into ALL_CLASSES of the transfer set: shared benchmark classes, then new ones."""
    t = cfg.transfer
    return list(range(t.shared_classes)) + [len(EVENT_CLASSES) + k for k in range(t.new_classes)]


def plan_transfer(cfg: SynthConfig, split: str, count: int) -> list[ClipPlan]:
    """FSD-like clips: variable length, one event filling most of the clip, sometimes a
    second one; complete labels over shared and new classes."""
    t = cfg.transfer
    classes = transfer_classes(cfg)
    plans = []
    for i in range(count):
        seed = (cfg.seed, SPLIT_CODES[f"transfer-{split}"], i)
        rng = np.random.default_rng(seed)
        seconds = round(float(np.exp(rng.uniform(np.log(t.seconds[0]), np.log(t.seconds[1])))), 3)
        chosen = [classes[i % len(classes)]]
        if len(classes) > 1 and rng.random() < t.second_event_probability:
            chosen.append(int(rng.choice([c for c in classes if c != chosen[0]])))
        events = []
        for c in chosen:
            length = seconds * float(rng.uniform(0.6, 1.0))
            onset = float(rng.uniform(0.0, seconds - length))
            events.append(Event(c, round(onset, 4), round(onset + length, 4), round(float(rng.uniform(5.0, 25.0)), 2)))
        plans.append(
            ClipPlan(f"fsd{split}{i:06d}", seed, seconds, float(rng.uniform(-60.0, -45.0)), events, sorted(set(chosen)))
        )
    return plans


_BACKGROUND: dict[int, np.ndarray] = {}


def _background_bank(sr: int) -> np.ndarray:
    """Per process: a few long coloured-noise sequences that clips take random excerpts of."""
    if sr not in _BACKGROUND:
        from psl.data.synth.events import brown_noise, pink_noise

        rng = np.random.default_rng(12345)
        n = int(BACKGROUND_BANK_SECONDS * sr)
        _BACKGROUND[sr] = np.stack([render(fn, rng, n, sr) for fn in (pink_noise, brown_noise)])
    return _BACKGROUND[sr]


def render_clip(plan: ClipPlan, sr: int) -> np.ndarray:
    """The plan's audio as float32 in [-1, 1]."""
    rng = np.random.default_rng(plan.seed + (1,))
    n = int(round(plan.seconds * sr))
    bank = _background_bank(sr)
    mix = rng.uniform(0.0, 1.0)
    start = int(rng.integers(0, bank.shape[1] - 1))
    idx = (start + np.arange(n)) % bank.shape[1]
    background = mix * bank[0, idx] + (1.0 - mix) * bank[1, idx]
    background *= 10.0 ** (plan.background_dbfs / 20.0) / max(float(np.sqrt(np.mean(background**2))), 1e-12)
    clip = background.astype(np.float64)
    for e in plan.events:
        a, b = int(round(e.onset * sr)), min(int(round(e.offset * sr)), n)
        if b - a < 2:
            continue
        level = 10.0 ** ((plan.background_dbfs + e.snr_db) / 20.0)
        clip[a:b] += level * render(ALL_CLASSES[e.class_index][2], rng, b - a, sr)
    peak = float(np.abs(clip).max())
    if peak > 0.99:  # scale the whole clip: SNRs stay as planned
        clip *= 0.99 / peak
    return clip.astype(np.float32)


def _render_job(plan: ClipPlan) -> np.ndarray:
    # int16 halves what travels back from the worker.
    return to_int16(render_clip(plan, SAMPLE_RATE))


def _write_wav_job(args: tuple[ClipPlan, int, Path]) -> None:
    plan, sr, path = args
    write_wav(path, render_clip(plan, sr), sr)  # a full disk is an OSError naming the file


def strong_csv(plans: list[ClipPlan], class_ids: list[str]) -> str:
    """Strong truth: one row per event, with whether its class made it into the weak label."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["clip_id", "onset", "offset", "class_index", "class_id", "snr_db", "in_weak_label"])
    index = {cid: i for i, cid in enumerate(class_ids)}
    for p in plans:
        for e in p.events:
            cid = ALL_CLASSES[e.class_index][0]
            writer.writerow([p.clip_id, e.onset, e.offset, index[cid], cid, e.snr_db, int(e.class_index in p.weak)])
    return out.getvalue()


def weak_labels_csv(plans: list[ClipPlan], class_ids: list[str]) -> str:
    """clip_id, labels ("3;17", as in the manifest): the weak labels of a complete split."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["clip_id", "labels"])
    index = {cid: i for i, cid in enumerate(class_ids)}
    for p in plans:
        writer.writerow([p.clip_id, ";".join(str(index[ALL_CLASSES[c][0]]) for c in sorted(p.eval_weak))])
    return out.getvalue()


def write_split(
    plans: list[ClipPlan], out: Path, classes: ClassList, workers: int, progress: bool, info: dict
) -> ClipStore:
    if is_store(out):
        return ClipStore(out)
    index = classes.index()
    writer = StoreWriter(out, classes)
    todo = [p for p in plans if p.clip_id not in writer.done_ids]
    rendered = ordered_results(
        _render_job,
        todo,
        workers=workers,
        chunksize=4,
        desc=f"synth {out.name}",
        total=len(plans),
        initial=len(plans) - len(todo),
        progress=progress,
    )
    with writer.closing_on_error():
        for plan, audio in zip(todo, rendered):
            writer.append(plan.clip_id, audio, [index[ALL_CLASSES[c][0]] for c in plan.weak], "synth")
    attachments = {STRONG_FILE: strong_csv(plans, list(classes.ids))}
    if all(p.eval_weak is not None for p in plans):
        attachments[WEAK_LABELS_FILE] = weak_labels_csv(plans, list(classes.ids))
    return writer.finish(info, attachments=attachments)


def write_fsd_layout(cfg: SynthConfig, root: Path, workers: int, progress: bool) -> None:
    """The transfer set as FSD50K's files: 44.1 kHz wavs and ground-truth CSVs."""
    t = cfg.transfer
    plans = {s: plan_transfer(cfg, s, getattr(t, f"{s}_clips")) for s in ("train", "val", "eval")}
    done_marker = root / "complete"
    if done_marker.exists():
        return
    truth = root / "FSD50K.ground_truth"
    for folder in (truth, root / "FSD50K.dev_audio", root / "FSD50K.eval_audio"):
        folder.mkdir(parents=True, exist_ok=True)
    vocabulary = [(ALL_CLASSES[c][0], ALL_CLASSES[c][1].replace(" ", "_")) for c in transfer_classes(cfg)]
    names = dict(vocabulary)
    with open(truth / "vocabulary.csv", "w", newline="") as f:
        csv.writer(f).writerows([i, name, cid] for i, (cid, name) in enumerate(vocabulary))
    rows = {"dev": [], "eval": []}
    jobs = []
    for split, ps in plans.items():
        folder = root / ("FSD50K.eval_audio" if split == "eval" else "FSD50K.dev_audio")
        for p in ps:
            mids = [ALL_CLASSES[c][0] for c in p.weak]
            labels = ",".join(names[m] for m in mids)
            row = [p.clip_id, labels, ",".join(mids)] + ([] if split == "eval" else [split])
            rows["eval" if split == "eval" else "dev"].append(row)
            if not (folder / f"{p.clip_id}.wav").exists():
                jobs.append((p, folder / f"{p.clip_id}.wav"))
    for _ in ordered_results(
        _write_wav_job,
        [(p, t.sample_rate, path) for p, path in jobs],
        workers=workers,
        chunksize=2,
        desc="synth fsd files",
        total=len(jobs),
        progress=progress,
    ):
        pass
    for name, header in (("dev", ["fname", "labels", "mids", "split"]), ("eval", ["fname", "labels", "mids"])):
        with open(truth / f"{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows[name])
    done_marker.write_text("")


def benchmark_classes(cfg: SynthConfig) -> ClassList:
    chosen = EVENT_CLASSES[: cfg.num_classes]
    return ClassList(tuple(c[0] for c in chosen), tuple(c[1] for c in chosen))


def check_config_matches(out: Path, cfg: SynthConfig) -> None:
    """Refuses to mix two configurations in one folder; records the config otherwise."""
    path = out / CONFIG_FILE
    wanted = as_dict(cfg)
    if path.exists():
        found = json.loads(path.read_text())
        if found != wanted:
            raise ConfigError(
                f"{out} holds a synthetic benchmark made with other settings ({path}); choose another --out"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(wanted, indent=2) + "\n")


def generate(cfg: SynthConfig, out: Path, *, workers: int | None = None, progress: bool = True) -> dict[str, ClipStore]:
    """Writes the benchmark's splits (and, when configured, the ingested transfer set in
    `out/fsd`) plus a dataset card. Returns the stores by split name."""
    from psl.data.fsd import ingest_fsd50k
    from psl.data.synth.card import write_card

    out = Path(out)
    check_config_matches(out, cfg)
    workers = workers or min(os.cpu_count() or 1, 8)
    classes = benchmark_classes(cfg)
    stores, plans = {}, {}
    for split, count in cfg.splits.items():
        plans[split] = plan_split(cfg, split, count)
        stores[split] = write_split(
            plans[split], out / split, classes, workers, progress, dict(dataset="synth", split=split, seed=cfg.seed)
        )
    if cfg.transfer is not None:
        raw = out / "sources" / "fsd50k"
        write_fsd_layout(cfg, raw, workers, progress)
        for split, result in ingest_fsd50k(raw, out / "fsd", workers=workers, progress=progress).items():
            stores[f"fsd/{split}"] = result.store
    write_card(out, cfg, stores, plans)
    return stores
