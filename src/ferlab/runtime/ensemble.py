"""Ensembles of FER models: averaging, majority vote, fitted weights, greedy selection, snapshot ensembles.

An :class:`Ensemble` is itself a model: it has ``classes``, ``data_config``, ``model_name = 'ensemble'`` and
``forward(x)`` returns log-probabilities, so ``softmax(forward(x))`` is the combined probability vector.
Members may take different inputs (48x48 gray, 224x224 RGB, an LBP channel): :meth:`Ensemble.predict_probs`
works on uint8 face crops and feeds every member through its *own* evaluation transform, and
:func:`ferlab.runtime.evaluate.predict_probs` hands ensembles to it, so ``ferlab evaluate``, ``Recognizer``
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
names and every member's model name, kwargs and data config. :func:`ferlab.runtime.files.load_model`
recognises it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..io import atomic_path
from ..models.spec import ENSEMBLE_FORMAT, ModelSpec, attach_spec, spec_of
from .combine import (  # noqa: F401  (re-exported: the rules belong to the ensemble model)
    ALIASES,
    METHODS,
    OBJECTIVES,
    _acc_nll,
    _score,
    canonical_method,
    combine_log_probs,
    combine_probs,
    fit_weights,
    normalise_weights,
)

FORMAT = ENSEMBLE_FORMAT


def _shared_data_config(configs):
    from ..models import DataConfig

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
        from .weights import load_reference

        members = list(members)
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        models, labels = [], []
        for m in members:
            if isinstance(m, (str, Path)):
                if Path(m).suffix == ".onnx":
                    raise ConfigError(
                        f"ensemble member {m}: ONNX files cannot be members; use its .safetensors"
                    )
                model = load_reference(m)  # shipped names, run folders, .pt and .safetensors alike
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
                attach_spec(model, spec_of(model, ref))  # the classes the caller gave
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
        cache_dir=None,
    ):
        """Every member's probabilities ``[M, N, C]`` for uint8 crops, each through its own eval transform.

        With ``return_times`` also the seconds each member took. ``cache_dir``: score each member through
        the content-addressed cache there (:mod:`ferlab.runtime.predcache`; a hit reports the seconds the
        first computation took).
        """
        from .predcache import cached_predict_probs

        out, times = [], []
        for m in self.members:
            p, secs, _ = cached_predict_probs(
                m, images, cache_dir, tta, batch_size, device, progress, precision, channels_last
            )
            out.append(p)
            times.append(secs)
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
        members.append({**spec_of(m).replace(classes=()).to_dict(), "name": name})
        sd.update({f"m{i}.{k}": v.detach().cpu().contiguous().clone() for k, v in m.state_dict().items()})
    meta = {
        "format": FORMAT,
        "method": ens.method,
        "weights": json.dumps(ens.weights.tolist()),
        "classes": json.dumps(list(ens.classes)),
        "members": json.dumps(members),
    }
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=meta)
    return path


def load_ensemble(path: str | Path) -> Ensemble:
    """The :class:`Ensemble` written by :func:`save_ensemble` (eval mode), without unpickling anything."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from .files import build_model

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
        try:
            model = build_model(ModelSpec.from_dict(d).replace(classes=classes))
        except (KeyError, ValueError, TypeError, ConfigError) as err:
            raise ConfigError(f"{path}: damaged ensemble member {i} ({type(err).__name__}: {err})") from None
        prefix = f"m{i}."
        model.load_state_dict({k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)})
        models.append(model.eval())
        names.append(d.get("name", d["model_name"]))
    return Ensemble(models, meta["method"], json.loads(meta["weights"]), classes, names)


def load_file(path: Path, meta: dict):
    """The loader :func:`ferlab.runtime.files.load_model` uses for ensemble files."""
    ens = load_ensemble(path)
    return ens, ens.classes, {"format": meta["format"], "method": ens.method, "path": str(path)}
