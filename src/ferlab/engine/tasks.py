"""Forward + loss in one small object, so multi-loss papers plug in without touching the training loop.

A task is called with a batch (``x``, hard labels ``y``, optional soft labels) and returns a dict with
``loss`` (scalar to backpropagate), ``logits`` and the named loss parts for logging.
"""

from __future__ import annotations

import torch
from torch import nn

from .losses import CenterLoss, IslandLoss


class ClassificationTask(nn.Module):
    """logits = model(x); loss = criterion(logits, y or soft) [+ w * mean(attn_reg)]."""

    def __init__(
        self, model: nn.Module, criterion: nn.Module, soft: bool = False, attn_reg_weight: float = 0.0
    ):
        super().__init__()
        self.model, self.criterion, self.soft, self.attn_reg_weight = model, criterion, soft, attn_reg_weight

    def forward(self, x: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None = None) -> dict:
        if self.attn_reg_weight:
            out = self.model.forward_outputs(x)
            logits = out["logits"]
        else:
            out, logits = None, self.model(x)
        ce = self.criterion(logits.float(), soft if self.soft else y)
        parts = {"ce": ce.detach()}
        loss = ce
        if out is not None and "attn_reg" in out:
            reg = out["attn_reg"].float().mean()
            loss = loss + self.attn_reg_weight * reg
            parts["attn_reg"] = reg.detach()
        return {"loss": loss, "logits": logits, "parts": parts}


class EmbeddingLossTask(ClassificationTask):
    """Softmax loss + lambda * (centre or island) loss on ``forward_outputs(x)['embedding']`` (paper 002)."""

    def __init__(
        self,
        model,
        criterion,
        aux: CenterLoss | IslandLoss,
        weight: float,
        soft: bool = False,
        attn_reg_weight: float = 0.0,
    ):
        super().__init__(model, criterion, soft, attn_reg_weight)
        self.aux, self.weight = aux, weight

    def forward(self, x, y, soft=None) -> dict:
        out = self.model.forward_outputs(x)
        logits = out["logits"]
        ce = self.criterion(logits.float(), soft if self.soft else y)
        aux = self.aux(out["embedding"].float(), y)
        loss = ce + self.weight * aux
        parts = {"ce": ce.detach(), type(self.aux).__name__.lower().replace("loss", "_loss"): aux.detach()}
        if self.attn_reg_weight and "attn_reg" in out:
            reg = out["attn_reg"].float().mean()
            loss = loss + self.attn_reg_weight * reg
            parts["attn_reg"] = reg.detach()
        return {"loss": loss, "logits": logits, "parts": parts}
