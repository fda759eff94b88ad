"""ferlab: facial expression recognition toolkit.

Public API::

    import ferlab
    ferlab.load_dataset("fer2013")              # datasets -> FERDataset of Split objects
    ferlab.create_model("smallcnn", num_classes=7)
    ferlab.list_models("emonext*")
    ferlab.create_transform(model.data_config, is_training=False)
    ferlab.Recognizer().predict("photo.jpg")    # faces with box, label and probabilities
"""

from ._version import __version__
from .errors import ConfigError, DataError, FerlabError, ImageReadError
from .labels import CANONICAL


def __getattr__(name):  # lazy: importing ferlab stays cheap (no torch until needed)
    if name in (
        "create_model",
        "list_models",
        "model_info",
        "register_model",
        "load_pretrained",
        "DataConfig",
    ):
        from . import models

        return getattr(models, name)
    if name in ("load_dataset", "find_datasets", "FERDataset", "Split"):
        from . import data

        return getattr(data, name)
    if name in ("Recognizer", "FacePrediction", "load_default", "list_pretrained"):
        from .infer import recognizer as inference

        return getattr(inference, name)
    if name in ("Ensemble", "load_ensemble", "save_ensemble"):
        from .infer import ensemble

        return getattr(ensemble, name)
    if name in ("create_transform",):
        from . import transforms

        return getattr(transforms, name)
    raise AttributeError(f"module 'ferlab' has no attribute {name!r}")


__all__ = ["CANONICAL", "ConfigError", "DataError", "FerlabError", "ImageReadError", "__version__"]
