"""Stage `evaluate`: a trained tagger on the full clips of a split, logged as its own run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from psl import tracking
from psl.checkpoints import open_tagger
from psl.scoring import evaluate_split
from psl.metrics import TaggingMetrics
from psl.stages.common import open_split
from psl.stages.training_stage import log_evaluation
from psl.trainer import default_device, Distributed


@dataclass
class EvaluateResult:
    run_id: str
    metrics: TaggingMetrics


def run_evaluate(
    model: str, data: Path, split: str = "eval", *, batch_size: int = 32, amp: str = "bf16"
) -> EvaluateResult:
    tracking.check_tracking()
    store = open_split(data, split)
    device = default_device(Distributed())
    opened = open_tagger(model, device, stores=[store])
    tagger, config = opened.model, opened.config
    tags = {"psl.model_run_id": opened.run_id} if opened.run_id else {}
    with tracking.stage_run(
        "evaluate",
        run_name=f"evaluate-{split}",
        variant=config.get("variant", "model"),
        dataset=store.meta.get("dataset", Path(data).name),
        # Named apart from the `evaluate` entry point's own params, which MLflow logs first.
        config={"evaluate": {"model": model, "data": str(data), "split": split, "amp": amp}},
        extra_tags=tags,
    ) as run:
        evaluation = evaluate_split(tagger, store, batch_size=batch_size, device=device, amp=amp)
        log_evaluation(evaluation, store, f"{split} split", config.get("variant", "model"))
        return EvaluateResult(run.info.run_id, evaluation.test)
