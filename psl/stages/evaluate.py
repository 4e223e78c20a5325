"""Stage `evaluate`: a trained tagger on the full clips of a split, logged as its own run."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from psl import tracking
from psl.evaluate import evaluate_split
from psl.metrics import TaggingMetrics
from psl.stages.common import load_tagger, open_split
from psl.stages.training import log_evaluation
from psl.train import default_device, Distributed


@dataclass
class EvaluateResult:
    run_id: str
    metrics: TaggingMetrics


def resolve_checkpoint(model: str, scratch: Path) -> tuple[Path, str | None]:
    """A checkpoint path, or the best checkpoint of an MLflow run id or of a registered model
    (models:/NAME@ALIAS, models:/NAME/VERSION); returns (path, run id or None)."""
    if Path(model).is_file():
        return Path(model), None
    run_id = tracking.run_of_model(model) if model.startswith("models:/") else model
    return tracking.download_checkpoint(run_id, scratch), run_id


def run_evaluate(
    model: str, data: Path, split: str = "eval", *, batch_size: int = 32, amp: str = "bf16"
) -> EvaluateResult:
    tracking.check_tracking()
    store = open_split(data, split)
    device = default_device(Distributed())
    with tempfile.TemporaryDirectory(prefix="psl-eval-") as scratch:
        checkpoint, source_run = resolve_checkpoint(model, Path(scratch))
        tagger, config = load_tagger(checkpoint, device)
    if list(store.classes.ids) != config["class_ids"]:
        raise ValueError(f"the model's {len(config['class_ids'])} classes are not the classes of {store.path}")
    tags = {"psl.model_run_id": source_run} if source_run else {}
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
