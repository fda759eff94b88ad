"""Imports every architecture module so its entrypoints register (like timm's models/__init__)."""

from . import (  # noqa: F401
    aemt,
    baselines,
    emonext,
    fernet,
    gclenet,
    pattlite,
    resemotenet,
    resmasking,
    smallcnn,
    vgg_cara,
)
