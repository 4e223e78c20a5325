"""The trainer every training stage shares: mixed precision, Adam with an optional warm-up
and cosine schedule, gradient clipping, mixup, validation on a held-out split with early
stopping, atomic `last`/`best` checkpoints, exact resume, and DDP under torchrun.

It knows nothing of MLflow: metrics go to a `sink(metrics, step)` callable. What is
trained on is given by a dataset, a sampler factory and a loss function, so the teacher,
the students and the baseline differ only in those.

Exact resume: the data order of an epoch depends only on (seed, epoch), crops on (seed,
epoch, clip), and dropout/SpecAugment/mixup on torch's RNG, whose state is checkpointed
with the model, optimiser, scheduler and progress. A run resumed from a checkpoint skips
the batches of the epoch it had done and ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import errno
import io
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from psl.checkpoints import load_checkpoint
from psl.data.datasets import pad_collate
from psl.data.samplers import ClassBalancedSampler, ShardedShuffleSampler
from psl.errors import CheckpointError, ConfigError, TrainingDiverged
from psl.files import write_atomic
from psl.metrics import TaggingMetrics
from psl.precision import KNOWN_PRECISIONS, PRECISIONS, autocast

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32  # per process
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "constant"  # "constant" or "cosine" (to zero at the last step)
    grad_clip: float = 0.0  # max gradient norm; 0 disables
    mixup: float = 0.0  # Beta(alpha, alpha) mixing of waveforms and targets; 0 disables
    amp: str = "bf16"  # "bf16", "fp16" (CUDA, with a gradient scaler) or "fp32"
    sampler: str = "balanced"  # "balanced" (AudioSet-style) or "shuffle"
    steps_per_epoch: int = 0  # 0: one pass over the training items (the balanced sampler draws this many batches)
    eval_every_steps: int = 0  # 0: validate (and checkpoint) at the end of each epoch
    early_stop_patience: int = 0  # validations without a better val mAP before stopping; 0: never
    workers: int = 2  # DataLoader processes
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be positive"),
            (self.schedule in ("constant", "cosine"), f"schedule must be constant or cosine, got {self.schedule!r}"),
            (self.amp in PRECISIONS, f"amp must be {KNOWN_PRECISIONS}, got {self.amp!r}"),
            (self.sampler in ("balanced", "shuffle"), f"sampler must be balanced or shuffle, got {self.sampler!r}"),
            (
                min(
                    self.warmup_steps,
                    self.steps_per_epoch,
                    self.eval_every_steps,
                    self.early_stop_patience,
                    self.workers,
                )
                >= 0,
                "counts must not be negative",
            ),
            (
                self.grad_clip >= 0 and self.mixup >= 0 and self.weight_decay >= 0,
                "grad_clip, mixup, weight_decay must be >= 0",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Distributed:
        """torchrun's environment; a single process without it."""
        if "RANK" not in os.environ:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def default_device(ddp: Distributed) -> torch.device:
    """This process's device; under torchrun also made the current CUDA device, so that work
    on the default stream (events, pinned-memory copies) does not land on cuda:0."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(ddp.local_rank)
    return torch.device("cuda", ddp.local_rank)


def loader_workers(device: torch.device, world_size: int = 1) -> int:
    """Processes that read ahead of the model: none on a CPU (they would compete with it for
    the cores), else up to 8 per GPU, leaving a core to the process driving each GPU."""
    if device.type != "cuda":
        return 0
    return min(8, max(1, (os.cpu_count() or 2) // world_size - 1))


class SkipFirst(Sampler[int]):
    """A sampler without its first `skip` items: the rest of an interrupted epoch."""

    def __init__(self, sampler: Sampler[int], skip: int) -> None:
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        it = iter(self.sampler)
        for _ in range(self.skip):
            next(it, None)
        return it

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


def save_atomic(obj: Any, path: Path) -> None:
    """Writes a checkpoint with `psl.files.write_atomic`: a failed write (a full disk) leaves
    the previous checkpoint as it was. It is serialised in memory and written by Python, so a
    full disk is an ENOSPC naming the file (torch.save reports it as "unexpected pos")."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    try:
        write_atomic(path, buffer.getbuffer())
    except OSError as error:
        reason = error.strerror or str(error)
        raise OSError(
            error.errno or errno.EIO, f"cannot write the checkpoint ({reason}); {path.name} is unchanged", str(path)
        ) from None


@dataclass
class TrainResult:
    best_val: float
    best_step: int
    steps: int
    stopped_early: bool
    seconds: float


LossFn = Callable[[Any, dict, torch.Tensor | None], torch.Tensor]
ValidateFn = Callable[[torch.nn.Module], TaggingMetrics]
# (rank, world_size, samples per epoch over all ranks or None for one pass) -> sampler
SamplerFactory = Callable[[int, int, int | None], Sampler[int]]


class Trainer:
    """Trains `model` on `dataset` with `loss_fn(output, batch, mix)`; validates with `validate(model)`
    (val mAP decides `best` and early stopping); writes checkpoints in `out_dir`."""

    def __init__(
        self,
        model: torch.nn.Module,
        dataset: Dataset,
        make_sampler: SamplerFactory,
        loss_fn: LossFn,
        validate: ValidateFn,
        cfg: TrainConfig,
        out_dir: Path,
        *,
        sink: Callable[[dict, int], None] | None = None,
        ddp: Distributed | None = None,
        device: torch.device | None = None,
        config_snapshot: dict | None = None,
        progress: bool = True,
    ) -> None:
        self.ddp = ddp or Distributed()
        self.device = device or default_device(self.ddp)
        self.cfg, self.dataset, self.loss_fn, self.validate = cfg, dataset, loss_fn, validate
        self.out_dir = Path(out_dir)
        self.sink = sink or (lambda metrics, step: None)
        self.config_snapshot = config_snapshot or {}
        self.progress = progress and self.ddp.is_main
        self.model = model.to(self.device)
        per_epoch = cfg.steps_per_epoch * cfg.batch_size * self.ddp.world_size if cfg.steps_per_epoch else None
        self.sampler = make_sampler(self.ddp.rank, self.ddp.world_size, per_epoch)
        self.steps_per_epoch = math.ceil(len(self.sampler) / cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16" and self.device.type == "cuda")
        self.amp = "bf16" if cfg.amp == "fp16" and self.device.type != "cuda" else cfg.amp
        self.train_model = DistributedDataParallel(self.model) if self.ddp.world_size > 1 else self.model
        self.state = dict(
            epoch=0,
            step_in_epoch=0,
            step=0,
            best_val=-1.0,
            best_step=-1,
            bad_evals=0,
            stopped_early=False,
            validated_step=0,
        )

    def _lr_factor(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.cfg.warmup_steps) if self.cfg.warmup_steps else 1.0
        if self.cfg.schedule == "cosine":
            return warm * 0.5 * (1.0 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))
        return warm

    # ---- checkpoints ------------------------------------------------------------------
    def _checkpoint(self) -> dict:
        return dict(
            format=CHECKPOINT_FORMAT,
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            state=dict(self.state),
            config=self.config_snapshot,
        )

    def resume(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: checkpoint format {ckpt.get('format')} is not {CHECKPOINT_FORMAT}")
        if self.config_snapshot and ckpt["config"] != self.config_snapshot:
            raise ConfigError(f"{path} was written with another config; resume with the same settings or start afresh")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"])
        if ckpt["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        self.state = dict(ckpt["state"])

    def _save(self, is_best: bool) -> None:
        if not self.ddp.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        ckpt = self._checkpoint()
        # best.pt first: last.pt names the best step, so it must never point at a best.pt
        # that a failed write left unwritten (--resume could then never finish).
        if is_best:
            save_atomic(ckpt, self.out_dir / "best.pt")
        save_atomic(ckpt, self.out_dir / "last.pt")

    # ---- training ---------------------------------------------------------------------
    def epoch_loader(self, epoch: int, skip: int = 0) -> DataLoader:
        """The batches of `epoch` after its first `skip` (the order depends on seed and epoch only)."""
        self.sampler.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return DataLoader(
            self.dataset,
            batch_size=self.cfg.batch_size,
            sampler=SkipFirst(self.sampler, skip * self.cfg.batch_size),
            collate_fn=pad_collate,
            num_workers=self.cfg.workers,
            drop_last=False,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            # The loader's own seed must not consume the global RNG that the checkpoint restores.
            generator=torch.Generator().manual_seed(self.cfg.seed * 100003 + epoch),
        )

    def _mix(self, batch: dict) -> torch.Tensor | None:
        """Mixup: each clip mixed with a shuffled partner; returns the per-clip weights (or None).
        The loss mixes the targets with the same weights (batch["partner"])."""
        if not self.cfg.mixup:
            return None
        n = batch["wave"].shape[0]
        lam = torch.distributions.Beta(self.cfg.mixup, self.cfg.mixup).sample((n,))
        partner = torch.randperm(n)
        wave = batch["wave"].float() / 32768.0 if batch["wave"].dtype == torch.int16 else batch["wave"].float()
        batch["wave"] = lam[:, None] * wave + (1 - lam[:, None]) * wave[partner]
        batch["lengths"] = torch.maximum(batch["lengths"], batch["lengths"][partner])
        batch["partner"] = partner
        return lam

    def train_step(self, batch: dict) -> float:
        """One optimiser step on `batch` (as the loader gives it, or already on the device); the loss."""
        mix = self._mix(batch)
        wave = batch["wave"].to(self.device, non_blocking=True)
        with autocast(self.device, self.amp):
            output = self.train_model(wave, batch["lengths"])
        loss = self.loss_fn(output, batch, None if mix is None else mix.to(self.device))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach())

    def _validate_and_checkpoint(self) -> None:
        step = self.state["step"]
        self.state["validated_step"] = step
        improved = False
        if self.ddp.is_main:
            metrics = self.validate(self.model)
            improved = metrics.mAP > self.state["best_val"]
            if improved:
                self.state.update(best_val=metrics.mAP, best_step=step, bad_evals=0)
            else:
                self.state["bad_evals"] += 1
            patience = self.cfg.early_stop_patience
            self.state["stopped_early"] = bool(patience and self.state["bad_evals"] >= patience)
            self.sink(
                {**metrics.as_dict("val/"), "val/best_mAP": self.state["best_val"], "epoch": self.state["epoch"]}, step
            )
        if self.ddp.world_size > 1:
            flag = torch.tensor(
                [int(self.state["stopped_early"])], device=self.device if self.device.type == "cuda" else "cpu"
            )
            dist.broadcast(flag, 0)
            self.state["stopped_early"] = bool(flag.item())
        self._save(improved)
        self.ddp.barrier()

    def fit(self) -> TrainResult:
        start_time = time.perf_counter()
        cfg = self.cfg
        bar = tqdm(
            total=self.total_steps,
            initial=self.state["step"],
            desc="train",
            unit="step",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        self.model.train()
        while self.state["epoch"] < cfg.epochs and not self.state["stopped_early"]:
            epoch = self.state["epoch"]
            tick = time.perf_counter()
            for batch in self.epoch_loader(epoch, self.state["step_in_epoch"]):
                loss = self.train_step(batch)
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"training loss became {loss} at step {self.state['step']}; try a lower lr or amp=fp32"
                    )
                self.state["step"] += 1
                self.state["step_in_epoch"] += 1
                now = time.perf_counter()
                rate = len(batch["wave"]) * self.ddp.world_size / max(now - tick, 1e-9)
                tick = now
                if self.ddp.is_main:
                    self.sink(
                        {"train/loss": loss, "train/lr": self.scheduler.get_last_lr()[0], "system/clips_per_s": rate},
                        self.state["step"],
                    )
                bar.set_postfix(loss=f"{loss:.4f}", clips_s=f"{rate:.0f}", epoch=epoch)
                bar.update()
                if cfg.eval_every_steps and self.state["step"] % cfg.eval_every_steps == 0:
                    self._validate_and_checkpoint()
                    if self.state["stopped_early"]:
                        break
            if not self.state["stopped_early"]:
                self.state.update(epoch=epoch + 1, step_in_epoch=0)
                if not cfg.eval_every_steps:
                    self._validate_and_checkpoint()
        if self.state["validated_step"] != self.state["step"]:
            self._validate_and_checkpoint()  # the steps after the last validation
        bar.close()
        return TrainResult(
            self.state["best_val"],
            self.state["best_step"],
            self.state["step"],
            self.state["stopped_early"],
            time.perf_counter() - start_time,
        )


def sampler_factory(dataset, num_classes: int, cfg: TrainConfig) -> SamplerFactory:
    """The sampler `cfg.sampler` names over `dataset` (class-balanced needs `dataset.clip_labels()`)."""

    def make(rank: int, world_size: int, samples: int | None):
        if cfg.sampler == "balanced":
            return ClassBalancedSampler(dataset.clip_labels(), num_classes, samples, cfg.seed, rank, world_size)
        if samples is not None and samples > len(dataset):
            raise ConfigError(
                f"steps_per_epoch asks for {samples} items a pass, but the shuffle sampler has {len(dataset)}"
            )
        return ShardedShuffleSampler(len(dataset) if samples is None else samples, cfg.seed, True, rank, world_size)

    return make


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
