"""Ensemble combination rules (see :mod:`ferlab.runtime.ensemble` for their definitions): ``mean``,
``logit``, ``vote`` and fitted ``weighted`` means, on probability arrays. numpy only (torch is imported by the
two functions that need it), so the rule names are cheap to read.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError, unknown_name

if TYPE_CHECKING:  # annotations only; torch is imported where it runs
    import torch

METHODS = ("mean", "logit", "vote", "weighted")
ALIASES = {"mean_prob": "mean", "prob": "mean", "mean_logit": "logit", "majority": "vote"}
OBJECTIVES = ("nll", "accuracy")
_TINY = 1e-30  # probabilities are clamped here before a log (representable in float32)


def canonical_method(method: str) -> str:
    """``'mean_prob'`` -> ``'mean'``, ``'mean_logit'`` -> ``'logit'``; unknown names are a ConfigError."""
    m = ALIASES.get(method, method)
    if m not in METHODS:
        raise unknown_name("ensemble method", method, (*METHODS, *ALIASES))
    return m


def normalise_weights(weights, n: int) -> np.ndarray:
    """Member weights as a float64 vector summing to one (uniform when ``weights`` is None)."""
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(w) != n:
        raise ConfigError(f"{len(w)} ensemble weights for {n} members")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"ensemble weights must be finite, >= 0 and not all zero, got {w.tolist()}")
    return w / w.sum()


# -- combination ----------------------------------------------------------------------------------------
def combine_log_probs(log_probs: torch.Tensor, method: str, weights) -> torch.Tensor:
    """Combined log-probabilities ``[N, C]`` from the members' log-probabilities ``[M, N, C]``."""
    import torch

    method = canonical_method(method)
    lp = log_probs.clamp_min(math.log(_TINY))
    w = torch.as_tensor(normalise_weights(weights, lp.shape[0]), dtype=lp.dtype, device=lp.device)
    if method in ("mean", "weighted"):
        return torch.einsum("m,mnc->nc", w, lp.exp()).clamp_min(_TINY).log()
    if method == "logit":
        return torch.log_softmax(torch.einsum("m,mnc->nc", w, lp), -1)
    # vote: in float64, so equal vote shares compare equal
    p = lp.double().exp()
    w = w.double()
    votes = torch.nn.functional.one_hot(p.argmax(-1), p.shape[-1]).double()
    v = torch.round(torch.einsum("m,mnc->nc", w, votes) * 1e9) / 1e9
    mean_p = torch.einsum("m,mnc->nc", w, p)
    top = v.max(-1, keepdim=True).values
    lower = torch.where(v < top, v, torch.full_like(v, -1.0)).max(-1, keepdim=True).values
    gap = torch.where(lower >= 0, top - lower, torch.ones_like(top))
    k = int((w > 0).sum())
    lam = torch.clamp(gap / (1 + gap), max=1.0 / (k + 1))
    out = (1 - lam) * v + lam * mean_p
    return out.clamp_min(_TINY).log().to(lp.dtype)


def combine_probs(probs, method: str, weights=None) -> np.ndarray:
    """Combined probabilities ``[N, C]`` (float32) from the members' probabilities ``[M, N, C]``."""
    import torch

    p = torch.as_tensor(np.asarray(probs), dtype=torch.float64)
    if p.ndim != 3:
        raise ConfigError(f"member probabilities must be [members, samples, classes], got {tuple(p.shape)}")
    return combine_log_probs(p.clamp_min(_TINY).log(), method, weights).exp().numpy().astype(np.float32)


def _acc_nll(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if len(y) == 0:
        return float("nan"), float("nan")
    acc = float((probs.argmax(1) == y).mean())
    nll = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
    return acc, nll


# -- fitting weights and selecting members ----------------------------------------------------------------
def fit_weights(probs, labels, objective: str = "nll", max_iter: int = 200, grid: int = 21) -> np.ndarray:
    """Weights (summing to one) of the ``mean`` rule fitted to validation probabilities ``[M, N, C]``.

    ``objective='nll'``: ``w = softmax(a)`` with ``a`` minimising the NLL of ``sum_m w_m p_m`` by L-BFGS
    (strong-Wolfe line search) from equal weights; the problem is convex in ``w``. ``'accuracy'``:
    coordinate search from equal weights — for each member in turn, try ``w_m`` on a grid of ``grid``
    values in [0, 1] (the other weights rescaled to sum to ``1 - w_m``) and keep a change only if it raises
    the accuracy (or keeps it and lowers the NLL); sweeps repeat until nothing changes.
    """
    import torch

    if objective not in OBJECTIVES:
        raise unknown_name("weight objective", objective, OBJECTIVES)
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    m, n = p.shape[0], p.shape[1]
    if n != len(y) or n == 0:
        raise ConfigError(f"cannot fit ensemble weights: {n} predictions for {len(y)} labels")
    if m == 1:
        return np.ones(1)
    if objective == "nll":
        py = torch.as_tensor(p[:, np.arange(n), y].T)  # [N, M]: each member's probability of the truth
        a = torch.zeros(m, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS(
            [a], lr=1, max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-14,
            line_search_fn="strong_wolfe",
        )  # fmt: skip

        def closure():
            opt.zero_grad()
            loss = -(py @ torch.softmax(a, 0)).clamp_min(1e-300).log().mean()
            loss.backward()
            return loss

        opt.step(closure)
        return torch.softmax(a.detach(), 0).numpy()
    w = np.full(m, 1.0 / m)
    best = _score(w, p, y)
    values = np.linspace(0, 1, grid)
    for _sweep in range(50):
        changed = False
        for i in range(m):
            rest = w.copy()
            rest[i] = 0
            s = rest.sum()
            for v in values:
                if s <= 0 and v < 1:
                    continue
                cand = rest / s * (1 - v) if s > 0 else np.zeros(m)
                cand[i] = v
                sc = _score(cand, p, y)
                if sc[0] > best[0] or (sc[0] == best[0] and sc[1] < best[1] - 1e-12):
                    w, best, changed = cand, sc, True
        if not changed:
            break
    return w / w.sum()


def _score(w: np.ndarray, p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    return _acc_nll(np.tensordot(w, p, 1), y)


# -- the model --------------------------------------------------------------------------------------------
