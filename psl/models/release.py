"""The authors' released teacher (`MobileNetV2_DM`, 40.53 mAP on AudioSet) as a psl tagger.

The release is a state dict (possibly under a `model` key) with torchvision-style names;
psl's MobileNetV2 has the same layers in the same order, so importing is a renaming:

    release                                   psl (AudioTagger)
    features.0.{0,1}.*                        backbone.features.0.{0,1}.*       stem conv, BN
    features.N.conv.i.{0,1}.*  (conv-BN-ReLU6) backbone.features.N.block.i.{0,1}.*
    features.N.conv.{n-2}.weight  (1x1 conv)  backbone.features.N.block.{n-2}.0.weight
    features.N.conv.{n-1}.*       (its BN)    backbone.features.N.block.{n-2}.1.*
    features.18.{0,1}.*                       backbone.features.18.{0,1}.*      1x1 to 1280
    classifier.1.{weight,bias}                backbone.classifier.{weight,bias} (classifier.0 is dropout)
    front_end.0.spectrogram.window, front_end.0.mel_scale.fb   checked against psl's front end

Its front end is torchaudio's MelSpectrogram + AmplitudeToDB(top_db=120) fed straight to
the network (`RELEASE_MODEL`: no learned normalisation, top_db 120, dropout 0.3).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import torchaudio

from psl.errors import ReleaseFormatError
from psl.models.tagger import AudioTagger, ModelConfig

RELEASE_FILE = "mobilenetv2_mAP40_53.pt"
RELEASE_MODEL = ModelConfig(
    width=1.0,
    dropout=0.3,
    n_mels=64,
    time_masks=0,
    freq_masks=0,
    input_norm="none",
    top_db=120.0,
    init="xavier",
)
_BLOCK = re.compile(r"^features\.(\d+)\.conv\.(\d+)\.(.+)$")
_FRONT_END = ("front_end.0.spectrogram.window", "front_end.0.mel_scale.fb")


def _block_lengths(names) -> dict[int, int]:
    """Entries of each inverted residual's `conv` sequence (3 without expansion, 4 with)."""
    lengths: dict[int, int] = {}
    for name in names:
        match = _BLOCK.match(name)
        if match:
            block, entry = int(match[1]), int(match[2])
            lengths[block] = max(lengths.get(block, 0), entry + 1)
    return lengths


def psl_name(name: str, block_lengths: dict[int, int]) -> str | None:
    """psl's parameter name for a release name (None: not one of the network's tensors)."""
    if name.startswith("classifier.1."):
        return "backbone.classifier." + name.removeprefix("classifier.1.")
    match = _BLOCK.match(name)
    if not match:
        return "backbone." + name if name.startswith("features.") else None
    block, entry, rest = int(match[1]), int(match[2]), match[3]
    projection = block_lengths[block] - 2  # the 1x1 projection conv, then its BN
    if entry >= projection:
        return f"backbone.features.{block}.block.{projection}.{entry - projection}.{rest}"
    return f"backbone.features.{block}.block.{entry}.{rest}"


def _check_front_end(state: dict[str, torch.Tensor], model: AudioTagger, path: Path) -> None:
    """The release's stored window and mel filters must be the ones psl's front end computes."""
    fe = model.frontend
    expected = {
        _FRONT_END[0]: torch.hann_window(fe.win_length, periodic=True),
        _FRONT_END[1]: torchaudio.functional.melscale_fbanks(
            fe.n_fft // 2 + 1, fe.f_min, fe.f_max or fe.sample_rate / 2, fe.n_mels, fe.sample_rate
        ),
    }
    for name, want in expected.items():
        if name in state and (state[name].shape != want.shape or not torch.allclose(state[name], want, atol=1e-6)):
            raise ReleaseFormatError(f"{path}: {name} is not psl's front end (a different window or mel filterbank)")


def release_to_psl(state: dict[str, torch.Tensor], model: AudioTagger, path: Path) -> dict[str, torch.Tensor]:
    """The release's weights renamed for `model`; refuses missing, unexpected or misshaped keys."""
    lengths = _block_lengths(state)
    own = model.state_dict()
    renamed, unexpected, misshaped = {}, [], []
    for name, tensor in state.items():
        if name in _FRONT_END:
            continue
        target = psl_name(name, lengths)
        if target not in own:
            unexpected.append(name)
        elif own[target].shape != tensor.shape:
            misshaped.append(f"{name} {tuple(tensor.shape)} (expected {tuple(own[target].shape)})")
        else:
            renamed[target] = tensor
    missing = sorted(set(own) - set(renamed))
    problems = [
        f"{label}: {', '.join(items[:6])}{' ...' if len(items) > 6 else ''} ({len(items)})"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("misshaped", misshaped))
        if items
    ]
    if problems:
        raise ReleaseFormatError(f"{path}: not the released MobileNetV2_DM: {'; '.join(problems)}")
    _check_front_end(state, model, path)
    return renamed


def release_teacher(state: Any, path: Path) -> AudioTagger:
    """The released teacher as an AudioTagger in eval mode (its class count from the head),
    from the contents of its file `path` (psl.checkpoints.load_release_teacher reads it): a
    state dict, possibly under a `model` key."""
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ReleaseFormatError(f"{path}: not a state dict of tensors (nor one under a 'model' key)")
    # A model saved from inside DataParallel carries this prefix on every name.
    state = {k.removeprefix("module."): v for k, v in state.items()}
    head = state.get("classifier.1.weight")
    if head is None or head.dim() != 2:
        raise ReleaseFormatError(f"{path}: not the released MobileNetV2_DM: missing: classifier.1.weight")
    model = AudioTagger(head.shape[0], RELEASE_MODEL)
    model.load_state_dict(release_to_psl(state, model, path))
    return model.eval()
