"""Optimisers (timm's factory) and schedulers (torch's), by the names the configs use.

Optimisers: sgd (momentum, Nesterov), adam, adamw, radam, adabelief, lookahead_* wrappers and
``ranger_adabelief`` = Lookahead(AdaBelief) as in Berindeie 2024 (FER ensembles).
Schedulers: ``step`` (x gamma every step_size epochs: Wang 2024 (AEMT) x0.1/10, Chen et al. 2024 (GCLENet) /10 every 20),
``plateau`` (ReduceLROnPlateau on ``monitor: val_loss|val_acc``; Chen & Chen 2024 (VGG16 + GCCA): halve after 3 stalled epochs), ``cosine`` (with optional linear
warm-up), ``cosine_restarts`` (CosineAnnealingWarmRestarts), ``cyclic`` (CyclicLR, for snapshot
ensembles) and ``onecycle``. ``per_batch`` tells the Trainer whether to step after every batch.
"""

from __future__ import annotations

import math

import torch
from timm.optim import create_optimizer_v2

from ..errors import ConfigError


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    name = cfg.optimizer
    kw = {}
    if name == "ranger_adabelief":  # Ranger = RAdam-rectified AdaBelief + Lookahead (Berindeie 2024)
        name = "lookahead_radabelief"
    if name.endswith("sgd"):
        name = name.replace("sgd", "nesterov" if cfg.nesterov else "momentum")
        kw["momentum"] = cfg.momentum
    return create_optimizer_v2(model, opt=name, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)


SCHEDULER_KWARGS = {
    "step": {"step_size", "gamma"},
    "plateau": {"mode", "monitor", "factor", "patience", "min_lr"},
    "cosine": {"min_lr_ratio"},
    "cosine_restarts": {"T_0", "T_mult", "eta_min"},
    "cyclic": {"base_lr", "max_lr", "step_size_up", "step_size_up_epochs", "mode", "cycle_momentum"},
    "onecycle": {"pct_start", "div_factor", "final_div_factor"},
}


def build_scheduler(opt: torch.optim.Optimizer, cfg, steps_per_epoch: int):
    """Returns (scheduler or None, per_batch: bool)."""
    kw = dict(cfg.scheduler_kwargs)
    s = cfg.scheduler
    allowed = SCHEDULER_KWARGS.get(s, set())
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise ConfigError(
            f"scheduler {s!r} takes no scheduler_kwargs {unknown}; valid: {sorted(allowed) or 'none'}"
        )
    total = cfg.epochs * steps_per_epoch
    try:
        if s == "none":
            return None, False
        if s == "step":
            return torch.optim.lr_scheduler.StepLR(
                opt, step_size=kw.get("step_size", 10), gamma=kw.get("gamma", 0.1)
            ), False
        if s == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode=kw.get("mode", "max" if kw.get("monitor", "val_loss") == "val_acc" else "min"),
                factor=kw.get("factor", 0.5), patience=kw.get("patience", 3), min_lr=kw.get("min_lr", 0.0),
            ), False  # fmt: skip
        if s == "cosine":
            warm = cfg.warmup_epochs * steps_per_epoch
            floor = kw.get("min_lr_ratio", 0.0)

            def f(step: int) -> float:
                if step < warm:
                    return (step + 1) / warm
                t = (step - warm) / max(1, total - warm)
                return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

            return torch.optim.lr_scheduler.LambdaLR(opt, f), True
        if s == "cosine_restarts":
            return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                opt, T_0=kw.get("T_0", 10), T_mult=kw.get("T_mult", 1), eta_min=kw.get("eta_min", 0.0)
            ), False
        if s == "cyclic":
            return torch.optim.lr_scheduler.CyclicLR(
                opt,
                base_lr=kw.get("base_lr", cfg.lr / 10),
                max_lr=kw.get("max_lr", cfg.lr),
                step_size_up=kw.get(
                    "step_size_up", round(kw.get("step_size_up_epochs", 2) * steps_per_epoch)
                ),
                mode=kw.get("mode", "triangular"),
                cycle_momentum=kw.get("cycle_momentum", False),
            ), True
        if s == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(
                opt,
                max_lr=cfg.lr,
                total_steps=total,
                # at least two warm-up steps: torch divides by (pct_start * total - 1)
                pct_start=min(max(kw.get("pct_start", 0.25), 2.5 / total), 0.9),
                div_factor=kw.get("div_factor", 25.0),
                final_div_factor=kw.get("final_div_factor", 1e4),
            ), True
    except TypeError as e:
        raise ConfigError(f"scheduler {s!r}: bad scheduler_kwargs ({e})") from None
    raise ConfigError(f"unknown scheduler {s!r}")
