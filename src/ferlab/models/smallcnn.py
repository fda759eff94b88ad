"""Small fast CNNs for 48x48 grayscale faces: ferlab's own baselines (no paper).

``smallcnn`` is a 4-stage VGG-style network (32-64-128-256 channels, two 3x3 conv-BN-ReLU per stage,
max-pool between stages, global average pooling, dropout, linear head): ~1.2 M parameters, ~0.24 GFLOP
per 48x48 face. It trains in minutes on a CPU, so the engine's smoke tests and CI use it.
``smallcnn_tiny`` (8-16-32-64 channels) exists for unit tests that need a model in milliseconds.
"""

from __future__ import annotations

import torch
from torch import nn

from ._base import FERModel
from ._registry import register_model


def conv_bn_act(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class SmallCNN(FERModel):
    gradcam_layer = "features.3"

    def __init__(
        self, num_classes: int = 7, in_chans: int = 1, widths=(32, 64, 128, 256), drop_rate: float = 0.3
    ):
        super().__init__()
        stages, c = [], in_chans
        for i, w in enumerate(widths):
            pool = [nn.MaxPool2d(2)] if i > 0 else []
            stages.append(nn.Sequential(*pool, conv_bn_act(c, w), conv_bn_act(w, w)))
            c = w
        self.features = nn.Sequential(*stages)
        self.num_classes, self.num_features = num_classes, c
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(c, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x.mean((2, 3)))
        return x if pre_logits else self.head(x)


@register_model(paper="ferlab: small CNN baseline", input_size=(1, 48, 48))
def smallcnn(num_classes: int = 7, in_chans: int = 1, img_size: int = 48, drop_rate: float = 0.3, **kwargs):
    """4-stage VGG-style CNN (32-64-128-256), ~1.2 M params, for 48x48 grayscale."""
    return SmallCNN(num_classes, in_chans, (32, 64, 128, 256), drop_rate)


@register_model(paper="ferlab: small CNN baseline", input_size=(1, 48, 48))
def smallcnn_tiny(
    num_classes: int = 7, in_chans: int = 1, img_size: int = 48, drop_rate: float = 0.0, **kwargs
):
    """4-stage CNN (8-16-32-64) for unit tests."""
    return SmallCNN(num_classes, in_chans, (8, 16, 32, 64), drop_rate)
