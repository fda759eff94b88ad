"""FERNet: ferlab's own residual CNNs for 48x48 grayscale faces (no paper), built for CPU speed.

The papers' models take 224x224 RGB input and cost 1-40 GFLOPs per face; FER2013 faces are 48x48
grayscale. FERNet spends its compute where the face has detail: a light full-resolution stem, then
pre-activation-free basic residual blocks (timm-style ``BasicBlock`` layout: conv-BN-ReLU-conv-BN + shortcut)
at 24x24, 12x12 and 6x6, global average pooling, dropout and a linear head.

* ``fernet_s`` — the default model's architecture (``ferlab.load_default()``).
* ``fernet_xs`` — the ``fast`` model's architecture (distilled from the default).

``separable=True`` replaces every 3x3 convolution after the first stage by a depthwise-separable one
(depthwise 3x3-BN-ReLU, then pointwise 1x1-BN(-ReLU)), the block of mini-Xception (Arriaga et al. 2017,
the model behind the ``fer`` package): about 1/7 of the multiply-adds at these widths, so a network can
be wider at the same cost. On CPUs without VNNI/AVX-512, where inference time goes with FLOPs, that is the
trade the ``fast`` model needs (issue: fast and correct on any CPU).

Widths and depths were picked by measuring accuracy per CPU-second on FER2013 on this project's 2-core
machine (see MODEL_CARD.md for the runs); they are arguments, so other trade-offs are one call away.
"""

from __future__ import annotations

import torch
from torch import nn

from ._base import FERModel
from ._registry import register_model


def _cbr(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False, groups=groups),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _sep(cin: int, cout: int, act: bool = True) -> nn.Sequential:
    """Depthwise-separable 3x3: depthwise conv3x3-BN-ReLU, pointwise conv1x1-BN(-ReLU)."""
    layers = [nn.Conv2d(cin, cin, 3, 1, 1, bias=False, groups=cin), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
              nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)]  # fmt: skip
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if act else []))


class ResidualPair(nn.Module):
    """Two conv3x3-BN(-ReLU) layers (depthwise-separable ones with ``separable``) with an identity shortcut
    (same width and resolution)."""

    def __init__(self, c: int, separable: bool = False):
        super().__init__()
        if separable:
            self.conv1, self.conv2 = _sep(c, c), _sep(c, c, act=False)
        else:
            self.conv1 = _cbr(c, c)
            self.conv2 = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        self.act = nn.ReLU(inplace=True)
        nn.init.zeros_(self.conv2[-1].weight)  # each residual branch starts at zero (zero_init_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + x)


class FERNet(FERModel):
    """Stages at 48, 24, 12 and 6 px (max-pool between them); each stage is conv3x3-BN-ReLU to the stage
    width, then ``depths[i]`` residual pairs. Max-pooling instead of strided convolutions, identity shortcuts
    only and 3x3 convolutions throughout keep every layer on oneDNN's fast channels-last bf16 path."""

    gradcam_layer = "stages.3"

    def __init__(self, num_classes: int = 7, in_chans: int = 1, widths=(32, 64, 128, 256), depths=(0, 1, 1, 1),
                 drop_rate: float = 0.3, separable: bool = False):  # fmt: skip
        super().__init__()
        stages, c = [], in_chans
        for i, (w, d) in enumerate(zip(widths, depths)):
            sep = separable and i > 0  # the first stage's conv sees 1-3 input channels: kept full
            entry = _sep(c, w) if sep else _cbr(c, w)
            layers = ([nn.MaxPool2d(2)] if i else []) + [entry] + [ResidualPair(w, sep) for _ in range(d)]
            stages.append(nn.Sequential(*layers))
            c = w
        self.stages = nn.Sequential(*stages)
        self.num_classes, self.num_features = num_classes, c
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(c, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x.mean((2, 3)))
        return x if pre_logits else self.head(x)


@register_model(paper="ferlab: FERNet (this project)", input_size=(1, 48, 48))
def fernet_s(
    num_classes: int = 7, in_chans: int = 1, img_size: int = 48, widths=(48, 96, 192, 384), depths=(0, 1, 1, 1),
    drop_rate: float = 0.3,
):  # fmt: skip
    """Residual CNN for 48x48 faces: stages 48-96-192-384 (the default model's architecture)."""
    return FERNet(num_classes, in_chans, tuple(widths), tuple(depths), drop_rate)


@register_model(paper="ferlab: FERNet (this project)", input_size=(1, 48, 48))
def fernet_xs(
    num_classes: int = 7, in_chans: int = 1, img_size: int = 48, widths=(16, 32, 64, 128), depths=(0, 0, 1, 1),
    drop_rate: float = 0.2, separable: bool = False,
):  # fmt: skip
    """Small CNN for 48x48 faces: stages 16-32-64-128 (the fast model's architecture); ``separable``:
    depthwise-separable convolutions after the first stage (see the module docstring)."""
    return FERNet(num_classes, in_chans, tuple(widths), tuple(depths), drop_rate, separable)
