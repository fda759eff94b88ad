"""The output contract every ferlab model meets.

* ``forward(x) -> logits [B, num_classes]`` and nothing else.
* ``forward_features(x)`` -> the backbone's features before the head (a map or a vector).
* ``forward_head(features, pre_logits=False)`` -> logits, or the pooled embedding the classifier sees.
* ``forward_outputs(x) -> dict``: the one documented way to get auxiliary outputs. Always holds
  ``'logits'`` and ``'embedding'`` ([B, D], what the island/centre loss uses); models may add
  ``'attn_reg'`` (a per-sample attention regulariser [B], EmoNeXt), ``'aux_logits'`` (list of deep-
  supervision logits) or ``'maps'`` (named feature/attention maps for analysis).
* ``num_classes``, ``num_features`` (embedding width), ``reset_classifier(n)``, ``get_classifier()``.
* ``data_config`` (set by ``create_model``) tells the transform factory how to build the input.
* ``gradcam_layer`` names the module Grad-CAM should hook (the last spatial feature map).

Models may override ``forward_outputs``; the default composes ``forward_features`` and ``forward_head``.
"""

from __future__ import annotations

import torch
from torch import nn


class FERModel(nn.Module):
    """Base class: subclasses set ``self.num_classes``, ``self.num_features``, ``self.head`` (a Linear
    or Sequential ending in one) and implement ``forward_features`` and ``forward_head``."""

    num_classes: int
    num_features: int
    gradcam_layer: str = ""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = self.forward_head(self.forward_features(x), pre_logits=True)
        return {"logits": self.classify(emb), "embedding": emb}

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        """Logits from the pre-logits embedding (the classifier alone)."""
        return self.get_classifier()(embedding)

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer with a fresh one of ``num_classes`` outputs."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
