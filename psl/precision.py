"""The precisions psl computes in (`amp` in configs, `--amp` on the command line) and the
autocast context for each: the one place that knows them, so an unknown name is refused
everywhere instead of meaning fp16 somewhere. Importing it does not import torch, so that the
command line can offer the choices."""

from __future__ import annotations

import enum
from contextlib import nullcontext
from typing import TYPE_CHECKING

from psl.errors import ConfigError

if TYPE_CHECKING:
    import torch


class Precision(enum.StrEnum):
    BF16 = "bf16"
    FP16 = "fp16"  # CUDA; training scales its gradients (on a CPU, training uses bf16)
    FP32 = "fp32"


PRECISIONS = tuple(p.value for p in Precision)
KNOWN_PRECISIONS = f"{', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}"  # "bf16, fp16 or fp32", for messages


def precision(amp: str) -> Precision:
    """`amp` as a Precision, or a ConfigError that names the known ones."""
    try:
        return Precision(amp)
    except ValueError:
        raise ConfigError(f"amp must be {KNOWN_PRECISIONS}, got {amp!r}") from None


def autocast(device: torch.device, amp: str):
    """The autocast context for "bf16", "fp16" or "fp32" on this device; any other name is a
    ConfigError."""
    import torch  # here: the command line reads Precision without loading torch

    kind = precision(amp)
    if kind is Precision.FP32:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if kind is Precision.BF16 else torch.float16)
