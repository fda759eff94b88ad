"""Training and evaluation engine: one Trainer, config recipes, losses, metrics, checkpoints, reports."""

from .checkpoint import export_weights, load_checkpoint, load_model
from .config import TrainConfig, load_config
from .evaluate import evaluate_model, predict_probs
from .metrics import acc_sta, classification_metrics
from .trainer import Trainer, TrainingDiverged, train

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "acc_sta", "classification_metrics", "evaluate_model",
           "export_weights", "load_checkpoint", "load_config", "load_model", "predict_probs", "train"]  # fmt: skip
