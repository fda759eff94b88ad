"""Runtime: how a model runs on this machine, shared by training, evaluation, inference and benchmarks.

- ``precision``: the one precision policy (``auto`` picks bf16 only where the hardware makes it fast);
- ``predict``: the one prediction loop (uint8 crops -> eval transform -> model -> probabilities, TTA);
- ``evaluate``: metrics of a model on a split and their reports; ``metrics``: the metric functions;
- ``files``: model files (checkpoints, ``.safetensors`` weights) written atomically, loaded without pickle,
  dispatched on their format through a loader table; ``ensemble``: the ensemble model, one such format;
- ``weights``: the shipped models and :func:`~ferlab.runtime.weights.load_reference`.
The CPU facts and the thread budget it relies on live one layer down, in :mod:`ferlab.hardware`.
"""

from __future__ import annotations

from .._lazy import lazy_exports
from ..models.spec import ENSEMBLE_FORMAT
from .files import register_loader

#: public name -> the module that defines it (imported on first use: importing the package stays cheap)
_EXPORTS = {
    "CpuInfo": "..hardware", "configure_threads": "..hardware", "cpu_info": "..hardware",
    "default_threads": "..hardware", "ort_session_options": "..hardware",
    "FAST_BF16_ENV": ".precision", "PRECISIONS": ".precision", "autocast_context": ".precision",
    "cpu_has_fast_bf16": ".precision", "resolve_precision": ".precision",
    "TTA": ".predict", "predict_probs": ".predict", "evaluate_model": ".evaluate",
    "load_model": ".files", "load_checkpoint": ".files", "export_weights": ".files", "atomic_save": ".files",
    "Ensemble": ".ensemble", "load_ensemble": ".ensemble", "save_ensemble": ".ensemble",
    "load_reference": ".weights", "PRETRAINED": ".weights",
}  # fmt: skip


def _load_ensemble_file(path, meta):
    from .ensemble import load_file

    return load_file(path, meta)


# ensembles are one of the model-file formats (runtime.files dispatches on the format)
register_loader(ENSEMBLE_FORMAT, _load_ensemble_file)

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
