"""The training objectives, on probabilities: binary cross-entropy in float32, mixup of the
targets, the weak-label loss, and the pseudo-label loss `a * BCE(p, psl) + (1 - a) * BCE(p, weak)`
from stored labels or (for comparison) from a teacher run online."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from psl.precision import autocast


def bce(probabilities: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on probabilities, in float32 outside autocast."""
    with torch.autocast(probabilities.device.type, enabled=False):
        return F.binary_cross_entropy(probabilities.float().clamp(1e-7, 1 - 1e-7), target.float())


def mixed(target: torch.Tensor, batch: dict, mix: torch.Tensor | None) -> torch.Tensor:
    """Targets mixed with the same weights and partners as the inputs (mixup)."""
    if mix is None:
        return target
    return mix[:, None] * target + (1 - mix[:, None]) * target[batch["partner"].to(target.device)]


def weak_bce(output, batch: dict, mix: torch.Tensor | None) -> torch.Tensor:
    """BCE of the clip probabilities against the weak clip labels."""
    return bce(output.clip, mixed(batch["label"].to(output.clip.device), batch, mix))


def psl_loss(alpha: float):
    def loss(output, batch: dict, mix) -> object:
        device = output.clip.device
        total = alpha * bce(output.clip, mixed(batch["psl"].to(device), batch, mix))
        if alpha < 1.0:
            total = total + (1.0 - alpha) * bce(output.clip, mixed(batch["label"].to(device), batch, mix))
        return total

    return loss


def online_psl_loss(teacher: torch.nn.Module, alpha: float, amp: str):
    """The original release's way, kept for comparison: the teacher runs inside every training
    step on the very chunks the student sees, and its clip probabilities are the targets."""
    teacher.eval()

    def loss(output, batch: dict, mix) -> torch.Tensor:
        device = output.clip.device
        with torch.no_grad(), autocast(device, amp):
            target = teacher(batch["wave"].to(device), batch["lengths"]).clip.float()
        total = alpha * bce(output.clip, target)  # the teacher saw the mixed inputs: no mixing needed
        if alpha < 1.0:
            total = total + (1.0 - alpha) * bce(output.clip, mixed(batch["label"].to(device), batch, mix))
        return total

    return loss
