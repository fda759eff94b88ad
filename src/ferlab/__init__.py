"""ferlab: facial expression recognition toolkit.

Public API::

    import ferlab
    ferlab.load_dataset("fer2013")              # datasets -> FERDataset of Split objects
    ferlab.create_model("smallcnn", num_classes=7)
    ferlab.list_models("emonext*")
    ferlab.create_transform(model.data_config, is_training=False)
    ferlab.Recognizer().predict("photo.jpg")    # faces with box, label and probabilities
"""

from ._lazy import lazy_exports
from ._version import __version__
from .errors import ConfigError, DataError, FerlabError, ImageReadError
from .labels import CANONICAL

_EXPORTS = {
    **dict.fromkeys(("create_model", "list_models", "model_info", "register_model", "load_pretrained", "DataConfig",
                     "ModelSpec"), ".models"),
    **dict.fromkeys(("load_dataset", "find_datasets", "FERDataset", "Split"), ".data"),
    **dict.fromkeys(("Recognizer", "FacePrediction", "resolve_model"), ".infer"),
    **dict.fromkeys(("load_default", "list_pretrained"), ".runtime.weights"),
    **dict.fromkeys(("Ensemble", "load_ensemble", "save_ensemble"), ".runtime.ensemble"),
    "create_transform": ".transforms",
}  # fmt: skip
__getattr__, __dir__, _lazy_all = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "CANONICAL",
    "ConfigError",
    "DataError",
    "FerlabError",
    "ImageReadError",
    "__version__",
    *_lazy_all,
]
