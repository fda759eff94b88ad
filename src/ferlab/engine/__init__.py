"""Training and evaluation engine: one Trainer, config recipes, losses, metrics, checkpoints, reports."""

from ..runtime.evaluate import evaluate_model
from ..runtime.files import export_weights, load_checkpoint, load_model
from ..runtime.metrics import acc_sta, classification_metrics
from ..runtime.predict import predict_probs
from .config import TrainConfig, load_config
from .trainer import Trainer, TrainingDiverged, train

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "acc_sta", "classification_metrics", "evaluate_model",
           "export_weights", "load_checkpoint", "load_config", "load_model", "predict_probs", "train"]  # fmt: skip
