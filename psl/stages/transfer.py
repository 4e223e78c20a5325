"""Stage `transfer`: how well a trained tagger's knowledge carries over to another dataset
(FSD50K, FSDKaggle2018, or the synthetic FSD-like set), logged as a `transfer` run.

- `linear`: the model stays frozen; each clip's embedding (the mean of its frame features
  over the whole clip) feeds a linear classifier, with sigmoid outputs for multi-label
  data and softmax for single-label data, its L2 weight chosen on `val`. Embeddings are
  cached per (checkpoint, split) so that probes with other settings do not recompute them.
- `finetune`: the whole network with a new head, trained a few epochs under AMP with
  early stopping on val mAP.

Metrics, under `transfer/<dataset>/<mode>/`: mAP, micro mAP and lwlrap for multi-label
data; accuracy and MAP@3 (and mAP) when every clip has exactly one label.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from psl import tracking
from psl.checkpoints import load_checkpoint, model_snapshot, open_tagger
from psl.config import as_dict
from psl.data.datasets import RandomCropDataset
from psl.data.store import ClipStore
from psl.errors import ConfigError, MissingInput, OutputExists
from psl.scoring import predict
from psl.files import write_atomic
from psl.locks import exclusive
from psl.metrics import lwlrap, single_label_metrics, tagging_metrics
from psl.models.tagger import AudioTagger
from psl.stages.common import DataConfig, open_split
from psl.objectives import weak_bce
from psl.trainer import (
    Distributed,
    TrainConfig,
    Trainer,
    default_device,
    sampler_factory,
    seed_everything,
)

MODES = ("linear", "finetune")


@dataclass(frozen=True)
class TransferConfig:
    data: DataConfig = field(default_factory=lambda: DataConfig(train_split="train"))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=5, lr=3e-4, early_stop_patience=2))
    l2_grid: list[float] = field(default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1])  # linear probe, chosen on val
    probe_steps: int = 100  # L-BFGS iterations of the linear probe
    eval_batch_size: int = 32
    cache: str = "runs/embeddings"  # cached clip embeddings of the linear probe

    def __post_init__(self) -> None:
        if not self.l2_grid or min(self.l2_grid) < 0:
            raise ValueError(f"l2_grid must list at least one weight >= 0, got {self.l2_grid}")
        if self.probe_steps < 1 or self.eval_batch_size < 1:
            raise ValueError("probe_steps and eval_batch_size must be >= 1")


@dataclass
class TransferResult:
    run_id: str
    metrics: dict[str, float]  # without the transfer/<dataset>/<mode>/ prefix


def is_single_label(*stores: ClipStore) -> bool:
    return all(len(labels) == 1 for store in stores for labels in store.labels)


def transfer_metrics(store: ClipStore, scores: np.ndarray, single_label: bool) -> dict[str, float]:
    truth = store.label_matrix()
    base = tagging_metrics(truth, scores)
    if single_label:
        return {"mAP": base.mAP, **single_label_metrics(np.array([lab[0] for lab in store.labels]), scores)}
    return {"mAP": base.mAP, "micro_mAP": base.micro_mAP, "lwlrap": lwlrap(truth, scores)}


def embeddings(model: AudioTagger, checkpoint_sha: str, store: ClipStore, cfg: TransferConfig, device) -> np.ndarray:
    """Clip embeddings of a split, from the cache when this checkpoint embedded it before."""
    path = Path(cfg.cache) / f"{checkpoint_sha[:16]}-{store.manifest_sha256[:16]}.npy"
    if path.exists():
        return np.load(path, allow_pickle=False)
    rows = predict(model, store, batch_size=cfg.eval_batch_size, device=device, amp=cfg.train.amp, output="embedding")
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = io.BytesIO()
    np.save(encoded, rows)
    write_atomic(path, encoded.getbuffer())
    return rows


def fit_linear_probe(
    x: dict[str, np.ndarray], stores: dict[str, ClipStore], single_label: bool, cfg: TransferConfig
) -> tuple[np.ndarray, float]:
    """Eval-split scores of a linear classifier on standardised embeddings, with the L2 weight
    that gives the best val mAP; returns (scores, chosen L2)."""
    mean, std = x["train"].mean(0), x["train"].std(0) + 1e-6
    feats = {s: torch.from_numpy((v - mean) / std).double() for s, v in x.items()}
    truth = torch.from_numpy(stores["train"].label_matrix()).double()
    target = truth.argmax(1) if single_label else truth
    best = (-1.0, None, None)
    for l2 in cfg.l2_grid:
        layer = _train_probe(feats["train"], target, truth.shape[1], single_label, l2, cfg.probe_steps)
        with torch.no_grad():
            val = _probabilities(layer(feats["val"]), single_label)
        score = tagging_metrics(stores["val"].label_matrix(), val).mAP
        if score > best[0]:
            best = (score, l2, layer)
    _, l2, layer = best
    with torch.no_grad():
        return _probabilities(layer(feats["eval"]), single_label), l2


def _train_probe(
    x: torch.Tensor, target: torch.Tensor, classes: int, single_label: bool, l2: float, steps: int
) -> torch.nn.Linear:
    """A linear layer fitted by full-batch L-BFGS to cross-entropy (softmax or per-class
    sigmoid) plus `l2` times its squared weights."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(x.shape[1], classes).double()
    optimiser = torch.optim.LBFGS(layer.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        logits = layer(x)
        loss = F.cross_entropy(logits, target) if single_label else F.binary_cross_entropy_with_logits(logits, target)
        loss = loss + l2 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return layer


def _probabilities(logits: torch.Tensor, single_label: bool) -> np.ndarray:
    return (logits.softmax(1) if single_label else logits.sigmoid()).numpy()


def finetune(
    source: AudioTagger,
    source_config: dict,
    stores: dict[str, ClipStore],
    cfg: TransferConfig,
    out: Path,
    device,
    resume: bool = False,
) -> AudioTagger:
    """The source network with a new head for the target classes, trained on `train` with
    early stopping on val mAP; returns it with its best weights. With `resume`, an interrupted
    fine-tuning continues from `out/last.pt`."""
    if not resume and (out / "last.pt").exists():
        raise OutputExists(f"{out} already holds a fine-tuning: pass --resume to continue it, or another --out")
    if resume and not (out / "last.pt").exists():
        raise MissingInput(f"--resume: {out / 'last.pt'} does not exist")
    classes = stores["train"].classes
    seed_everything(cfg.train.seed)  # before the new head is drawn: torch seeds each process at random
    model = AudioTagger(len(classes), source.cfg)
    head = ("classifier.weight", "classifier.bias")  # the new head starts fresh
    model.load_state_dict({k: v for k, v in source.state_dict().items() if not k.endswith(head)}, strict=False)
    dataset = RandomCropDataset(stores["train"], cfg.data.clip_seconds, seed=cfg.train.seed)

    def validate(m):
        scores = predict(m, stores["val"], batch_size=cfg.eval_batch_size, device=device, amp=cfg.train.amp)
        return tagging_metrics(stores["val"].label_matrix(), scores)

    trainer = Trainer(
        model,
        dataset,
        sampler_factory(dataset, len(classes), cfg.train),
        weak_bce,
        validate,
        cfg.train,
        out,
        sink=tracking.metric_sink,
        ddp=Distributed(),
        device=device,
        config_snapshot={**model_snapshot(source.cfg, classes.ids, classes.names), "transfer_from": source_config},
    )
    if resume:
        trainer.resume(out / "last.pt")
    trainer.fit()
    model.load_state_dict(load_checkpoint(out / "best.pt")["model"])
    return model


def run_transfer(
    model_ref: str,
    data: Path,
    mode: str,
    cfg: TransferConfig,
    *,
    out: Path,
    resume: bool = False,
    tags: dict[str, str] | None = None,
) -> TransferResult:
    if mode not in MODES:
        raise ConfigError(f"mode must be linear or finetune, got {mode!r}")
    tracking.check_tracking()
    splits = {"train": cfg.data.train_split, "val": cfg.data.val_split, "eval": cfg.data.eval_split}
    stores = {role: open_split(data, name) for role, name in splits.items()}
    single = is_single_label(*stores.values())
    dataset = stores["train"].meta.get("dataset", Path(data).name)
    device = default_device(Distributed())
    opened = open_tagger(model_ref, device)
    model, config, checkpoint_sha, source_run = opened.model, opened.config, opened.sha256, opened.run_id
    prefix = f"transfer/{dataset}/{mode}/"
    tags = {**({"psl.model_run_id": source_run} if source_run else {}), **(tags or {})}
    out = Path(out)
    resumable = resume and mode == "finetune" and (out / "last.pt").exists()
    with (
        exclusive(out / ".lock", f"the transfer folder {out}"),
        tracking.stage_run(
            "transfer",
            run_name=f"transfer-{dataset}-{mode}-{config.get('variant', 'model')}",
            variant=config.get("variant", "model"),
            dataset=dataset,
            extra_tags={**tags, "psl.transfer_mode": mode},
            config={"transfer": {**as_dict(cfg), "model": model_ref, "data": str(data), "mode": mode}},
            out=out,
            resumed_at_step=load_checkpoint(out / "last.pt")["state"]["step"] if resumable else None,
        ) as run,
    ):
        if mode == "linear":
            x = {role: embeddings(model, checkpoint_sha, store, cfg, device) for role, store in stores.items()}
            scores, l2 = fit_linear_probe(x, stores, single, cfg)
            tracking.log_metrics({prefix + "chosen_l2": l2})
        else:
            tuned = finetune(model, config, stores, cfg, out, device, resume)
            scores = predict(tuned, stores["eval"], batch_size=cfg.eval_batch_size, device=device, amp=cfg.train.amp)
        metrics = transfer_metrics(stores["eval"], scores, single)
        tracking.log_metrics({prefix + k: v for k, v in metrics.items()})
        return TransferResult(run.info.run_id, metrics)
