"""Training: the one Trainer, config recipes, losses, optimisers, protocols (k-fold, repeats, transfer,
ablation tables) and the training queue. Evaluation, metrics and model files live one layer down, in
:mod:`ferlab.runtime`; the names below are re-exported lazily so ``import ferlab.engine`` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "TrainConfig": ".config", "load_config": ".config",
    "Trainer": ".trainer", "TrainingDiverged": ".trainer", "train": ".trainer",
    "evaluate_model": "..runtime.evaluate", "predict_probs": "..runtime.predict",
    "acc_sta": "..runtime.metrics", "classification_metrics": "..runtime.metrics",
    "export_weights": "..runtime.files", "load_checkpoint": "..runtime.files", "load_model": "..runtime.files",
}  # fmt: skip


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'ferlab.engine' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
