"""Training: the one Trainer, config recipes, losses, optimisers, protocols (k-fold, repeats, transfer,
ablation tables) and the training queue. Evaluation, metrics and model files live one layer down, in
:mod:`ferlab.runtime`; the names below are re-exported lazily so ``import ferlab.engine`` stays cheap.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": ".config", "load_config": ".config",
    "Trainer": ".trainer", "TrainingDiverged": ".trainer", "train": ".trainer",
    "evaluate_model": "..runtime.evaluate", "predict_probs": "..runtime.predict",
    "acc_sta": "..runtime.metrics", "classification_metrics": "..runtime.metrics",
    "export_weights": "..runtime.files", "load_checkpoint": "..runtime.files", "load_model": "..runtime.files",
}  # fmt: skip

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
