"""The dataset card of a synthetic benchmark: what it holds and how incomplete its weak labels are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from psl.config import as_dict
from psl.data.synth import WEAK_LABELS_FILE
from psl.data.synth.config import SynthConfig
from psl.files import write_atomic


def split_statistics(plans) -> dict:
    events = [len(p.events) for p in plans]
    true_tags = [len({e.class_index for e in p.events}) for p in plans]
    weak_tags = [len(p.weak) for p in plans]
    durations = [e.offset - e.onset for p in plans for e in p.events]
    return dict(
        clips=len(plans),
        events_per_clip=round(float(np.mean(events)), 3),
        true_tags_per_clip=round(float(np.mean(true_tags)), 3),
        weak_tags_per_clip=round(float(np.mean(weak_tags)), 3),
        missing_label_rate=round(1.0 - sum(weak_tags) / max(sum(true_tags), 1), 4),
        median_event_seconds=round(float(np.median(durations)), 3),
    )


def eval_weak_statistics(plans, store) -> dict | None:
    """How incomplete the `eval` split's weak labels (weak_labels.csv beside its complete
    labels) are; None for a store written before they were kept."""
    if store is None or not (store.path / WEAK_LABELS_FILE).is_file():
        return None
    true_tags = sum(len({e.class_index for e in p.events}) for p in plans)
    weak_tags = sum(len(p.eval_weak) for p in plans)
    return dict(
        file=f"eval/{WEAK_LABELS_FILE}",
        weak_tags_per_clip=round(weak_tags / len(plans), 3),
        missing_label_rate=round(1.0 - weak_tags / max(true_tags, 1), 4),
    )


# What the benchmark's parameters stand in for: published AudioSet figures and their sources.
AUDIOSET_SOURCES = {
    "download": "AudioSet download page, research.google.com/audioset/download.html",
    "csv": "header of AudioSet's balanced_train_segments.csv (22,160 clips, 52,882 positive labels)",
    "strong": "AudioSet strong-label release (Hershey et al., ICASSP 2021), research.google.com/audioset/"
    "download_strong.html (103,463 training clips); its 934,821 training events as quoted in a public "
    "mirror's README",
    "strong-classes": "mean distinct labels per clip of audioset_train_strong.tsv, 4.18, as computed in a "
    "public third-party dataset card (not in the paper itself)",
    "skew": "Moore et al., 'Dataset balancing can hurt model performance', ICASSP 2023, arXiv 2307.00079: "
    "'music occurs roughly 15,000 times more frequently than the rarest (toothbrush)'",
}


def audioset_comparison(cfg: SynthConfig, splits: dict) -> list[str]:
    """The card's table of what each parameter stands in for in AudioSet, with its source."""
    balanced = splits.get("balanced", {})
    ratio = cfg.splits["full"] / cfg.splits["balanced"]
    skew = cfg.num_classes**cfg.full_class_skew
    rows = [
        ("unbalanced : balanced clips", "2,042,985 : 22,176 (92x)", "download", f"{ratio:.0f}x (CPU budget)"),
        ("weak tags per balanced clip", "2.39", "csv", balanced.get("weak_tags_per_clip")),
        ("classes present per clip (strong labels)", "4.18", "strong-classes", balanced.get("true_tags_per_clip")),
        ("events per clip (strong labels)", "9.0", "strong", balanced.get("events_per_clip")),
        (
            "most / least frequent class, unbalanced set",
            "~15,000x",
            "skew",
            f"{skew:.0f}x (Zipf {cfg.full_class_skew:g})",
        ),
        (
            "event durations",
            "not found in published sources",
            "",
            f"log-uniform {cfg.event_seconds[0]:g}-{cfg.event_seconds[1]:g} s",
        ),
    ]
    lines = [
        "## What it stands in for",
        "",
        "| quantity | AudioSet | this benchmark (`balanced`) |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {q} | {a}{f' [{s}]' if s else ''} | {b} |" for q, a, s, b in rows]
    lines += ["", *(f"[{key}] {text}" for key, text in AUDIOSET_SOURCES.items())]
    return lines


def write_card(out: Path, cfg: SynthConfig, stores: dict, plans: dict) -> None:
    card = dict(
        description="psl synthetic weakly labelled benchmark with strong truth (see psl/data/synth)",
        config=as_dict(cfg),
        classes=list(stores["full"].classes.names),
        missing_label_model=type(cfg.missing).__doc__.strip().replace("\n   ", ""),
        splits={split: split_statistics(p) for split, p in plans.items()},
        stores={
            name: dict(
                clips=len(s),
                hours=round(float(s.num_samples.sum()) / s.sample_rate / 3600, 3),
                manifest_sha256=s.manifest_sha256,
            )
            for name, s in stores.items()
        },
    )
    lines = [
        "# Synthetic benchmark",
        "",
        f"{len(card['classes'])} event classes, seed {cfg.seed}, clips of {cfg.clip_seconds:g} s.",
        "",
        "| split | clips | events/clip | true tags/clip | weak tags/clip | missing-label rate |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for split, st in card["splits"].items():
        lines.append(
            f"| {split} | {st['clips']} | {st['events_per_clip']} | {st['true_tags_per_clip']} | "
            f"{st['weak_tags_per_clip']} | {st['missing_label_rate']:.1%} |"
        )
    eval_weak = eval_weak_statistics(plans.get("eval"), stores.get("eval"))
    if eval_weak is not None:
        card["eval_weak_labels"] = eval_weak
        lines += [
            "",
            f"The eval split's labels are complete; its weak labels ({eval_weak['file']}, the same missing-label "
            f"model) drop {eval_weak['missing_label_rate']:.1%} of its true tags.",
        ]
    lines += ["", "Missing labels: " + card["missing_label_model"], "", "Classes: " + ", ".join(card["classes"]), ""]
    lines += [*audioset_comparison(cfg, card["splits"]), ""]
    for name, text in (("dataset_card.json", json.dumps(card, indent=2) + "\n"), ("dataset_card.md", "\n".join(lines))):
        write_atomic(out / name, text)
