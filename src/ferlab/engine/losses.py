"""Losses of the papers: (weighted, smoothed) cross-entropy, soft-label CE, centre loss and island loss.

Island loss (Cai et al., FG 2018; Chen & Chen 2024 (VGG16 + GCCA) eq. 5-7)::

    L = L_softmax + lambda * L_island,   L_island = L_center + lambda1 * sum_{j != k} (cos(c_j, c_k) + 1)

with ``L_center = 1/2 * mean_i ||x_i - c_{y_i}||^2`` (mean over the batch, as Wen et al.'s centre loss is
usually normalised), lambda = 0.005, lambda1 = 7 (Chen & Chen 2024). The pairwise sum runs over ordered pairs
j != k of the class centres. The centres are parameters of the loss module, learned by their own SGD
optimiser (the Trainer builds it from ``center_lr``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SoftTargetCrossEntropy(nn.Module):
    """Cross-entropy against probability targets (FER+ 'probability' labels): -sum p * log q."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()


class CenterLoss(nn.Module):
    """Centre loss: half the mean squared distance of each embedding to its class centre."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, dim) * 0.01)

    def center_term(self, emb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * (emb - self.centers[y]).pow(2).sum(1).mean()

    def forward(self, emb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.center_term(emb, y)


class IslandLoss(CenterLoss):
    """L_island = L_center + lambda1 * sum over ordered pairs j != k of (cos(c_j, c_k) + 1)."""

    def __init__(self, num_classes: int, dim: int, lambda1: float = 7.0):
        super().__init__(num_classes, dim)
        self.lambda1 = lambda1

    def pair_term(self) -> torch.Tensor:
        c = F.normalize(self.centers, dim=1)
        cos = c @ c.t()
        off = ~torch.eye(len(c), dtype=torch.bool, device=c.device)
        return (cos[off] + 1).sum()

    def forward(self, emb: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.center_term(emb, y) + self.lambda1 * self.pair_term()


def classification_loss(
    label_smoothing: float = 0.0, weight: torch.Tensor | None = None, soft: bool = False
) -> nn.Module:
    """CE with optional label smoothing and class weights (Berindeie 2024), or soft-target CE."""
    if soft:
        return SoftTargetCrossEntropy()
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
