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
    """Softmax loss + lambda * (centre or island) loss on ``forward_outputs(x)['embedding']`` (Chen & Chen 2024)."""

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


class DistillationTask(ClassificationTask):
    """Knowledge distillation (Hinton et al., 2015): (1 - alpha) * CE(student, y) + alpha * T^2 * KL(teacher_T || student_T).

    The teacher (any ferlab model, ensemble or checkpoint) runs in eval mode without gradients on the same
    augmented batch; it must take the same input as the student (same data config). With ``teacher=None``
    the teacher's logits come with each batch instead (``teacher_logits``: precomputed, e.g. by the
    Trainer's ``kd_cache``); any per-row constant shift of them (log-probabilities) gives the same loss.
    """

    def __init__(
        self,
        model,
        criterion,
        teacher: nn.Module | None,
        alpha: float = 0.5,
        temperature: float = 4.0,
        soft: bool = False,
    ):
        super().__init__(model, criterion, soft)
        self.teacher = teacher.eval() if teacher is not None else None
        self.alpha, self.temperature = alpha, temperature
        for p in self.teacher.parameters() if teacher is not None else ():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher never trains
        return self

    def forward(self, x, y, soft=None, teacher_logits: torch.Tensor | None = None) -> dict:
        import torch.nn.functional as F

        logits = self.model(x)
        if teacher_logits is not None:
            t_logits = teacher_logits.float()
        elif self.teacher is None:
            raise ValueError("DistillationTask without a teacher needs teacher_logits with every batch")
        else:
            with torch.no_grad():
                t_logits = self.teacher(x).float()
        ce = self.criterion(logits.float(), soft if self.soft else y)
        t = self.temperature
        kd = (
            F.kl_div(
                F.log_softmax(logits.float() / t, -1),
                F.log_softmax(t_logits / t, -1),
                reduction="batchmean",
                log_target=True,
            )
            * t
            * t
        )
        loss = (1 - self.alpha) * ce + self.alpha * kd
        return {"loss": loss, "logits": logits, "parts": {"ce": ce.detach(), "kd": kd.detach()}}
