"""MobileNetV2 for log-mel input with a decision-level head, as in the PSL paper.

The backbone is the standard MobileNetV2 (inverted residuals with the (t, c, n, s)
settings of Sandler et al.) with a one-channel stem. Features are pooled over
frequency only, so every output frame (time stride 32) keeps its own 1280-d feature;
each frame gets its own class probabilities (dropout, linear, sigmoid) and the clip
score is their mean ("decision-mean"). That is what lets a teacher score short crops
and label every frame. This module knows nothing of data, losses or tracking.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# (expansion t, output channels c, repeats n, first stride s)
INVERTED_RESIDUAL_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
TIME_STRIDE = 32
EMBEDDING_DIM = 1280
CONV_INITS = ("kaiming", "xavier")


def _divisible(value: float, divisor: int = 8) -> int:
    """Channels rounded to a multiple of 8, never more than 10% below the exact width."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn_act(cin: int, cout: int, kernel: int, stride: int, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers = [] if expansion == 1 else [_conv_bn_act(cin, hidden, 1, 1)]
        layers += [_conv_bn_act(hidden, hidden, 3, stride, groups=hidden), _conv_bn_act(hidden, cout, 1, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


@dataclass
class TaggerOutput:
    clip: torch.Tensor  # [B, C] clip probabilities (mean of the valid frames)
    frames: torch.Tensor  # [B, T', C] frame probabilities
    embedding: torch.Tensor  # [B, 1280] mean of the valid frames' features
    valid_frames: torch.Tensor  # [B] number of output frames that cover real audio


class MobileNetV2(nn.Module):
    """Log-mel `[B, 1, n_mels, T]` to per-frame features and decision-mean probabilities."""

    def __init__(self, num_classes: int, width: float = 1.0, dropout: float = 0.2, init: str = "kaiming") -> None:
        super().__init__()
        channels = _divisible(32 * width)
        last = _divisible(EMBEDDING_DIM * max(1.0, width))
        layers: list[nn.Module] = [_conv_bn_act(1, channels, 3, 2)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTINGS:
            out = _divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        layers.append(_conv_bn_act(channels, last, 1, 1))
        self.features = nn.Sequential(*layers)
        self.embedding_dim = last
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(last, num_classes)
        self._init_weights(init)

    def _init_weights(self, init: str) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and init == "xavier":  # the release's choice
                nn.init.xavier_uniform_(m.weight)
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    @staticmethod
    def output_frames(input_frames: torch.Tensor | int):
        """Output frames for a given number of input (log-mel) frames: five stride-2 stages."""
        out = input_frames
        for _ in range(5):
            out = (out - 1) // 2 + 1
        return out

    def frame_features(self, spec: torch.Tensor) -> torch.Tensor:
        """`[B, 1, n_mels, T]` -> `[B, T', 1280]`, averaged over frequency."""
        return self.features(spec).mean(dim=2).transpose(1, 2)

    def forward(self, spec: torch.Tensor, input_frames: torch.Tensor | None = None) -> TaggerOutput:
        feats = self.frame_features(spec)
        # Probabilities in float32 (also under autocast): the clip score averages them.
        frames = torch.sigmoid(self.classifier(self.dropout(feats)).float())
        feats = feats.float()
        n_out = feats.shape[1]
        if input_frames is None:
            valid = torch.full((feats.shape[0],), n_out, device=feats.device)
        else:
            valid = self.output_frames(input_frames.to(feats.device)).clamp(1, n_out)
        mask = (torch.arange(n_out, device=feats.device) < valid[:, None]).unsqueeze(-1).to(frames.dtype)
        count = valid.to(frames.dtype)[:, None]
        clip = (frames * mask).sum(dim=1) / count
        embedding = (feats * mask).sum(dim=1) / count
        return TaggerOutput(clip, frames, embedding, valid)
