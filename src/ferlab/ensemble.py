"""Ensembles of FER models: averaging, majority vote, fitted weights, greedy selection, snapshot ensembles.

An :class:`Ensemble` is itself a model: it has ``classes``, ``data_config``, ``model_name = 'ensemble'`` and
``forward(x)`` returns log-probabilities, so ``softmax(forward(x))`` is the combined probability vector.
Members may take different inputs (48x48 gray, 224x224 RGB, an LBP channel): :meth:`Ensemble.predict_probs`
works on uint8 face crops and feeds every member through its *own* evaluation transform, and
:func:`ferlab.engine.evaluate.predict_probs` hands ensembles to it, so ``ferlab evaluate``, ``Recognizer``
and ``ferlab predict`` accept ensembles unchanged. ``forward(x)`` needs members that share one data config.

Combination rules (``M`` members with weights ``w`` summing to one, ``p_m`` a member's class probabilities
— with test-time augmentation, the member's TTA-averaged probabilities):

* ``mean`` — ``sum_m w_m p_m`` (the arithmetic mean of probabilities);
* ``logit`` — ``softmax(sum_m w_m log p_m)``, the (weighted) mean of the members' log-softmax outputs. As a
  log-softmax differs from the logits by a per-sample constant, this equals ``softmax`` of the mean logits;
* ``vote`` — majority vote: member ``m`` gives ``w_m`` votes to its arg-max class. The winner is the class
  with the most votes; **ties are broken by the higher mean probability** ``sum_m w_m p_m`` among the tied
  classes (then by the lower class index). The output is the probability-like vector
  ``(1 - lam) * v + lam * mean_prob`` with ``v`` the vote shares and ``lam = min(1/(K+1), g/(1+g))``
  (``K`` members with a weight > 0, ``g`` the sample's margin between the top vote share and the next lower
  one); it sums to one and its arg-max is exactly the vote winner. With equal weights it is
  ``(votes + mean_prob) / (M + 1)``;
* ``weighted`` — the ``mean`` rule with weights fitted on a validation split (:func:`fit_weights`), either
  minimising the NLL (softmax-parametrised weights, L-BFGS) or maximising accuracy (coordinate search).

Saved ensembles are one self-contained ``.safetensors`` file (:func:`save_ensemble`): member ``i``'s
tensors under ``m{i}.``, and the metadata (``format = 'ferlab-ensemble'``) holds the method, weights, class
names and every member's model name, kwargs and data config. :func:`ferlab.engine.checkpoint.load_model`
recognises it.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, unknown_name

FORMAT = "ferlab-ensemble"
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


def greedy_select(
    probs, labels, method: str = "mean", replacement: bool = True, max_size: int | None = None
) -> dict:
    """Caruana-style forward selection on cached validation probabilities ``[M, N, C]``.

    Start from the empty ensemble; at each step add the candidate whose addition gives the highest
    validation accuracy of the combined ensemble (``method``; ties: lower NLL, then lower index). Stop when
    no candidate raises the accuracy strictly, or at ``max_size`` picks. With ``replacement=True``
    (Caruana's default) a member may be picked again, which weights it: the result's ``weights`` are the
    pick counts divided by the number of picks. Returns ``bag`` (the picks in order), ``selected`` (distinct
    member indices, ascending), ``weights`` (per selected member), ``counts`` (per pool member) and
    ``history`` (validation accuracy after each pick).
    """
    method = "mean" if canonical_method(method) == "weighted" else canonical_method(method)
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    m = p.shape[0]
    bag: list[int] = []
    history: list[float] = []
    best_acc = -1.0
    while max_size is None or len(bag) < max_size:
        cands = [i for i in range(m) if replacement or i not in bag]
        if not cands:
            break
        scored = []
        for i in cands:
            counts = np.bincount([*bag, i], minlength=m)
            keep = counts > 0
            acc, nll = _acc_nll(combine_probs(p[keep], method, counts[keep]), y)
            scored.append((-acc, nll, i))
        neg_acc, _nll, pick = min(scored)
        if -neg_acc <= best_acc:
            break
        best_acc = -neg_acc
        bag.append(pick)
        history.append(best_acc)
    counts = np.bincount(bag, minlength=m)
    selected = [int(i) for i in np.flatnonzero(counts)]
    return {
        "bag": bag,
        "selected": selected,
        "weights": (counts[selected] / counts.sum()).tolist(),
        "counts": counts.tolist(),
        "history": history,
        "replacement": replacement,
        "method": method,
    }


def disagreement_matrix(probs) -> np.ndarray:
    """``D[i, j]``: the fraction of samples on which members ``i`` and ``j`` predict different classes."""
    pred = np.asarray(probs).argmax(-1)
    return (pred[:, None, :] != pred[None, :, :]).mean(-1)


# -- the model --------------------------------------------------------------------------------------------
def _shared_data_config(configs):
    from .models import DataConfig

    if all(c == configs[0] for c in configs):
        return configs[0], True
    rgb = any(c.color == "rgb" for c in configs)
    ch = 3 if rgb else 1
    h = max(c.input_size[1] for c in configs)
    w = max(c.input_size[2] for c in configs)
    return DataConfig((ch, h, w), "rgb" if rgb else "gray", False, (0.5,) * ch, (0.5,) * ch), False


class Ensemble(nn.Module):
    """A combination of FER models with the model contract (``classes``, ``data_config``, log-prob output).

    Args:
        members: models (with ``classes`` and ``data_config``), or paths: ``.safetensors`` exports,
            ``.pt`` checkpoints, run folders (their ``best.pt``).
        method: ``'mean'`` (alias ``'mean_prob'``), ``'logit'`` (``'mean_logit'``), ``'vote'`` or
            ``'weighted'``; see the module docstring.
        weights: one weight per member (normalised to sum to one); default equal. ``weighted`` ensembles get
            them from :meth:`fit`.
        classes: class names, for members that do not carry ``.classes``.
        names: labels of the members in reports (default: the path, or the model name).

    Members must predict the same classes in the same order (else a ConfigError). Members with different
    input sizes or colours are fine: :meth:`predict_probs` gives each its own transform. The ensemble's
    ``data_config`` is the members' shared one, or (mixed members) the largest input side in RGB if any
    member is RGB — what callers such as ``Recognizer`` resize variable-sized crops to before the members'
    own transforms run.
    """

    model_name = "ensemble"
    is_ensemble = True

    def __init__(self, members, method: str = "mean", weights=None, classes=None, names=None) -> None:
        super().__init__()
        from .inference import resolve_model

        members = list(members)
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        models, labels = [], []
        for m in members:
            if isinstance(m, (str, Path)):
                model = resolve_model(m)  # shipped names, run folders, .pt and .safetensors alike
                if not isinstance(model, torch.nn.Module):
                    raise ConfigError(
                        f"ensemble member {m}: ONNX files cannot be members; use its .safetensors"
                    )
                labels.append(str(m))
            else:
                model = m
                labels.append(getattr(m, "model_name", type(m).__name__))
            if not hasattr(model, "data_config"):
                raise ConfigError(
                    f"ensemble member {labels[-1]} has no data_config (build it with create_model)"
                )
            models.append(model)
        names = [str(n) for n in names] if names is not None else labels
        if len(names) != len(models):
            raise ConfigError(f"{len(names)} names for {len(models)} ensemble members")
        ref = tuple(classes) if classes is not None else None
        ref_name = "the given classes"
        for model, name in zip(models, names):
            cls = tuple(getattr(model, "classes", None) or ())
            if not cls:
                if ref is None:
                    raise ConfigError(f"ensemble member {name} has no .classes; pass classes=")
                if getattr(model, "num_classes", len(ref)) != len(ref):
                    raise ConfigError(
                        f"ensemble member {name} has {model.num_classes} outputs for {len(ref)} classes"
                    )
                model.classes = ref
                continue
            if ref is None:
                ref, ref_name = cls, names[0]
            elif cls != ref:
                raise ConfigError(
                    f"ensemble members disagree on classes: {ref_name} has {list(ref)}, {name} has {list(cls)}"
                )
        self.members = nn.ModuleList(models)
        self.names = names
        self.classes = ref
        self.num_classes = len(ref)
        self.method = canonical_method(method)
        self.weights = normalise_weights(weights, len(models))
        self.data_config, self.shared_config = _shared_data_config([m.data_config for m in models])
        self.eval()

    def __len__(self) -> int:
        return len(self.members)

    @property
    def model_kwargs(self) -> dict:
        return {"method": self.method, "weights": self.weights.tolist(), "members": list(self.names)}

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def set_weights(self, weights) -> None:
        self.weights = normalise_weights(weights, len(self.members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``[B, C]`` of the combination for an input every member takes (shared config)."""
        if not self.shared_config:
            raise ConfigError(
                "ensemble members take different inputs; call predict_probs(uint8 crops) instead of forward"
            )
        lp = torch.stack([torch.log_softmax(m(x).float(), -1) for m in self.members])
        return combine_log_probs(lp, self.method, self.weights)

    @torch.no_grad()
    def member_probs(
        self,
        images,
        tta: str = "none",
        batch_size: int = 256,
        device: str = "cpu",
        progress: bool = False,
        precision: str = "fp32",
        channels_last: bool = False,
        return_times: bool = False,
    ):
        """Every member's probabilities ``[M, N, C]`` for uint8 crops, each through its own eval transform.

        With ``return_times`` also the seconds each member took.
        """
        from .engine.evaluate import predict_probs
        from .transforms import create_transform

        out, times = [], []
        for m in self.members:
            t = time.perf_counter()
            tf = create_transform(m.data_config, is_training=False)
            out.append(
                predict_probs(m, images, tf, batch_size, tta, device, progress, precision, channels_last)
            )
            times.append(time.perf_counter() - t)
        probs = np.stack(out)
        return (probs, times) if return_times else probs

    def predict_probs(
        self,
        images,
        tta: str = "none",
        batch_size: int = 256,
        device: str = "cpu",
        progress: bool = False,
        precision: str = "fp32",
        channels_last: bool = False,
    ) -> np.ndarray:
        """Combined probabilities ``[N, C]`` for uint8 crops ``[N,H,W(,3)]`` (members' TTA applied first)."""
        if len(images) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        probs = self.member_probs(images, tta, batch_size, device, progress, precision, channels_last)
        return combine_probs(probs, self.method, self.weights)

    def fit(
        self, images, labels, objective: str = "nll", tta: str = "none", batch_size: int = 256
    ) -> np.ndarray:
        """Fit the weights on a validation split (see :func:`fit_weights`) and switch to ``'weighted'``."""
        self.set_weights(fit_weights(self.member_probs(images, tta, batch_size), labels, objective))
        self.method = "weighted"
        return self.weights

    def __repr__(self) -> str:
        w = ", ".join(f"{v:.3f}" for v in self.weights)
        return f"Ensemble(method={self.method!r}, members={self.names}, weights=[{w}])"


# -- saving and loading --------------------------------------------------------------------------------------
def save_ensemble(ens: Ensemble, path: str | Path) -> Path:
    """One self-contained ``.safetensors``: tensors ``m{i}.<key>``, metadata with everything else (atomic)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"{path}: an ensemble is saved as a .safetensors file")
    members, sd = [], {}
    for i, (m, name) in enumerate(zip(ens.members, ens.names)):
        if getattr(m, "is_ensemble", False) or not hasattr(m, "model_kwargs") or not hasattr(m, "model_name"):
            raise ConfigError(
                f"ensemble member {name} cannot be saved: build members with ferlab.create_model"
            )
        members.append({"model_name": m.model_name, "model_kwargs": m.model_kwargs,
                        "data_config": m.data_config.to_dict(), "name": name})  # fmt: skip
        sd.update({f"m{i}.{k}": v.detach().cpu().contiguous().clone() for k, v in m.state_dict().items()})
    meta = {
        "format": FORMAT,
        "method": ens.method,
        "weights": json.dumps(ens.weights.tolist()),
        "classes": json.dumps(list(ens.classes)),
        "members": json.dumps(members),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(sd, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def load_ensemble(path: str | Path) -> Ensemble:
    """The :class:`Ensemble` written by :func:`save_ensemble` (eval mode), without unpickling anything."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from .engine.checkpoint import _build

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ensemble file {path} not found")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a ferlab ensemble (no '{FORMAT}' metadata)")
    sd = load_file(str(path))
    classes = tuple(json.loads(meta["classes"]))
    models, names = [], []
    for i, d in enumerate(json.loads(meta["members"])):
        model = _build(d["model_name"], d["model_kwargs"], d["data_config"])
        prefix = f"m{i}."
        model.load_state_dict({k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)})
        model.classes = classes
        models.append(model.eval())
        names.append(d.get("name", d["model_name"]))
    return Ensemble(models, meta["method"], json.loads(meta["weights"]), classes, names)


def snapshot_members(
    run_dir: str | Path, epochs=None, include_best: bool = True, include_last: bool = False
) -> list[Path]:
    """A run's snapshot-ensemble members: its ``epoch_XXX.pt`` checkpoints (by epoch) plus ``best.pt``.

    Snapshots come from the ``snapshot_epochs`` training option (paper 004: epochs 30-80 every 10 under a
    cyclic learning rate). ``epochs`` keeps only those epoch numbers. ``best.pt`` (best validation metric) is
    added unless it is the same epoch as a listed snapshot; ``include_last`` adds ``last.pt`` likewise.
    Paper 004 also used a "best test" checkpoint: ferlab never selects on the test split, so there is none.
    """
    from .engine.checkpoint import load_checkpoint

    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"run folder {run} not found")
    snaps = []
    for p in run.glob("epoch_*.pt"):
        mt = re.fullmatch(r"epoch_(\d+)\.pt", p.name)
        if mt and (epochs is None or int(mt.group(1)) in set(epochs)):
            snaps.append((int(mt.group(1)), p))
    snaps.sort()
    out = [p for _, p in snaps]
    seen = {e for e, _ in snaps}
    for name, want in (("best.pt", include_best), ("last.pt", include_last)):
        if want and (run / name).is_file():
            epoch = load_checkpoint(run / name).get("epoch")
            if epoch not in seen:
                out.append(run / name)
                seen.add(epoch)
    if not out:
        raise ConfigError(f"{run}: no epoch_*.pt snapshots or best.pt (train with snapshot_epochs=[...])")
    return out


# -- evaluation and report -------------------------------------------------------------------------------------
def _prepare_split(split, classes, data_config):
    """(uint8 images, labels in ``classes``' indices, left-out counts) for an in-memory evaluation."""
    from .labels import remap

    if not split.in_memory:
        split = split.load(size=tuple(data_config.input_size[1:]), grayscale=data_config.color == "gray")
    y = split.labels
    left_out = {}
    if tuple(split.classes) != tuple(classes):
        y = remap(split.labels, split.classes, classes)
        keep = y >= 0
        if not keep.any():
            raise ConfigError(f"no class of the split {split.classes} is known to the ensemble {classes}")
        left_out = {
            c: int((split.labels[~keep] == i).sum()) for i, c in enumerate(split.classes) if c not in classes
        }
        split, y = split.subset(keep), y[keep]
    return split.images, np.asarray(y), left_out


def _metrics(probs, y, classes) -> dict:
    from .engine.metrics import classification_metrics

    m = classification_metrics(y, probs, classes)
    return {k: m[k] for k in ("n", "accuracy", "macro_f1", "weighted_f1", "ece", "nll")}


def run_ensemble(
    members,
    dataset: str = "fer2013",
    split: str = "test",
    fit_split: str = "val",
    method: str = "mean",
    greedy: bool = False,
    replacement: bool = True,
    objective: str = "nll",
    tta: str = "none",
    batch_size: int = 256,
    precision: str = "fp32",
    data_dir=None,
    progress: bool = False,
) -> tuple[Ensemble, dict]:
    """Build, fit (on ``fit_split``) and evaluate (on ``split``) an ensemble; returns it and its report.

    ``members`` is the candidate pool (models or paths). ``greedy`` selects from it with
    :func:`greedy_select` on ``fit_split``; ``method='weighted'`` fits the weights there (:func:`fit_weights`).
    Every pool member is also scored on ``split``, so the report compares the ensemble with each of them.
    """
    from .data import load_dataset
    from .runtime.precision import resolve_precision

    method = canonical_method(method)
    pool = Ensemble(members)
    ds = load_dataset(dataset, data_dir)
    images, y, left_out = _prepare_split(ds.split(split), pool.classes, pool.data_config)
    kw = {"tta": tta, "batch_size": batch_size, "progress": progress, "precision": precision}
    probs, secs = pool.member_probs(images, return_times=True, **kw)
    m = len(pool)
    selected, weights, selection, fit = list(range(m)), np.full(m, 1.0 / m), None, None
    if greedy or method == "weighted":
        fimages, fy, _ = _prepare_split(ds.split(fit_split), pool.classes, pool.data_config)
        fprobs = pool.member_probs(fimages, **kw)
        if greedy:
            selection = greedy_select(fprobs, fy, method, replacement)
            selected, weights = selection["selected"], np.asarray(selection["weights"])
        if method == "weighted":
            weights = fit_weights(fprobs[selected], fy, objective)
        fit = {
            "split": fit_split,
            "objective": objective if method == "weighted" else None,
            "members_accuracy": [_acc_nll(p, fy)[0] for p in fprobs],
            "ensemble": _metrics(combine_probs(fprobs[selected], method, weights), fy, pool.classes),
        }
    ens = Ensemble([pool.members[i] for i in selected], method, weights, pool.classes,
                   [pool.names[i] for i in selected])  # fmt: skip
    t = time.perf_counter()
    eprobs = combine_probs(probs[selected], method, weights)
    combine_s = time.perf_counter() - t
    n = max(len(y), 1)
    full_w = np.zeros(m)
    full_w[selected] = ens.weights
    rows = []
    for i, (mod, name) in enumerate(zip(pool.members, pool.names)):
        rows.append({"index": i, "name": name, "model": getattr(mod, "model_name", type(mod).__name__),
                     "weight": float(full_w[i]), "params": sum(p.numel() for p in mod.parameters()),
                     "ms_per_image": 1000 * secs[i] / n, **_metrics(probs[i], y, pool.classes)})  # fmt: skip
    ens_row = {"name": f"ensemble ({method})", "model": "ensemble", "weight": 1.0, "params": ens.num_params,
               "ms_per_image": sum(rows[i]["ms_per_image"] for i in selected) + 1000 * combine_s / n,
               **_metrics(eprobs, y, pool.classes)}  # fmt: skip
    best = max(rows, key=lambda r: r["accuracy"])
    report = {
        "dataset": dataset,
        "split": split,
        "classes": list(pool.classes),
        "method": method,
        "tta": tta,
        "precision": resolve_precision(precision),
        "left_out_unknown_classes": left_out,
        "members": rows,
        "selected": selected,
        "weights": ens.weights.tolist(),
        "ensemble": ens_row,
        "gain": {
            "best_member": best["name"],
            "accuracy_vs_best_member": ens_row["accuracy"] - best["accuracy"],
            "accuracy_vs_mean_member": ens_row["accuracy"] - float(np.mean([r["accuracy"] for r in rows])),
            "params_ratio_vs_best_member": ens_row["params"] / max(best["params"], 1),
            "latency_ratio_vs_best_member": ens_row["ms_per_image"] / max(best["ms_per_image"], 1e-9),
        },
        "disagreement": disagreement_matrix(probs).tolist(),
        "selection": selection,
        "fit": fit,
    }
    return ens, report


def markdown_ensemble_report(r: dict) -> str:
    """The report as Markdown: member/ensemble table, gain against cost, disagreement matrix."""
    title = f"# Ensemble ({r['method']}) on {r['dataset']}/{r['split']} (TTA {r['tta']})"
    lines = [title, "", "| # | member | model | weight | params | ms/image | accuracy | macro F1 | NLL | ECE |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for row in [*r["members"], r["ensemble"]]:
        idx = f"m{row['index']}" if "index" in row else "**all**"
        lines.append(
            f"| {idx} | {row['name']} | {row['model']} | {row['weight']:.3f} | {row['params']:,} | "
            f"{row['ms_per_image']:.3f} | {100 * row['accuracy']:.2f} | {row['macro_f1']:.4f} | "
            f"{row['nll']:.4f} | {row['ece']:.4f} |"
        )
    g = r["gain"]
    lines += ["", f"- gain: {100 * g['accuracy_vs_best_member']:+.2f} pp accuracy over the best member "
              f"({g['best_member']}), {100 * g['accuracy_vs_mean_member']:+.2f} pp over the members' mean",
              f"- cost: {g['params_ratio_vs_best_member']:.2f}x the parameters and "
              f"{g['latency_ratio_vs_best_member']:.2f}x the latency of the best member (measured, batched)"]  # fmt: skip
    if r.get("selection"):
        s = r["selection"]
        lines.append(f"- greedy selection ({'with' if s['replacement'] else 'without'} replacement) on "
                     f"{r['fit']['split']}: picks {[f'm{i}' for i in s['bag']]}, validation accuracy "
                     f"{' -> '.join(f'{100 * a:.2f}' for a in s['history'])}")  # fmt: skip
    if r.get("fit"):
        f = r["fit"]
        what = f"weights fitted ({f['objective']})" if f["objective"] else "selection"
        lines.append(f"- {what} on {f['split']}: ensemble accuracy {100 * f['ensemble']['accuracy']:.2f}%, "
                     f"NLL {f['ensemble']['nll']:.4f}")  # fmt: skip
        if f["split"] == r["split"]:
            lines.append("- warning: fitted and evaluated on the same split (optimistic)")
    d = r["disagreement"]
    names = [f"m{i}" for i in range(len(d))]
    lines += ["", "Disagreement (fraction of images where two members' predictions differ)", "",
              "| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]  # fmt: skip
    for n, row in zip(names, d):
        lines.append(f"| {n} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    return "\n".join(lines) + "\n"


def plot_disagreement(d, names, path: str | Path, title: str = "") -> Path:
    """The pairwise disagreement matrix as a PNG heat map."""
    from .engine.plots import _plt, save_figure

    plt = _plt()
    d = np.asarray(d)
    k = len(names)
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * k, 1.2 + 0.7 * k))
    im = ax.imshow(d, cmap="Oranges", vmin=0, vmax=max(float(d.max()), 1e-6))
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{d[i, j]:.3f}", ha="center", va="center", fontsize=8,
                    color="white" if d[i, j] > 0.6 * d.max() else "black")  # fmt: skip
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_title(title or "pairwise disagreement")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return save_figure(fig, path)


def write_ensemble_report(r: dict, out_dir: str | Path, stem: str = "ensemble") -> dict:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>_disagreement.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(r, indent=1))
    (out / f"{stem}.md").write_text(markdown_ensemble_report(r))
    names = [f"m{i}" for i in range(len(r["disagreement"]))]
    png = plot_disagreement(r["disagreement"], names, out / f"{stem}_disagreement.png",
                            f"disagreement on {r['dataset']}/{r['split']}")  # fmt: skip
    return {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "png": png}
