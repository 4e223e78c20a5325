"""Stages trained on weak clip labels: the `teacher` on the large split (AudioSet `full`)
and the weak `baseline`, the student network on the small split's weak labels."""

from __future__ import annotations

from pathlib import Path

from psl.data.datasets import RandomCropDataset
from psl.stages.common import Resolved, build_section
from psl.objectives import weak_bce
from psl.stages.training import StageResult, StageSpec, TaggerStageConfig, run_training_stage


def run_weak_stage(
    resolved: Resolved,
    section: str,
    stage: str,
    variant: str,
    *,
    out: Path,
    data: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    tags: dict[str, str] | None = None,
) -> StageResult | None:
    cfg = build_section(TaggerStageConfig, resolved, section)

    def spec(stores, root, device):
        dataset = RandomCropDataset(stores["train"], cfg.data.clip_seconds, seed=cfg.train.seed)
        return StageSpec(stage, variant, dataset, weak_bce)

    return run_training_stage(resolved, cfg, spec, out=out, data=data, resume=resume, progress=progress, tags=tags)


def run_teacher(resolved: Resolved, **options) -> StageResult | None:
    return run_weak_stage(resolved, "teacher", "teacher", "teacher", **options)


def run_baseline(resolved: Resolved, **options) -> StageResult | None:
    return run_weak_stage(resolved, "baseline", "baseline", "weak", **options)
