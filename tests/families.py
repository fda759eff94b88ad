"""Size variants of one implementation, for the tests that cost seconds per million parameters.

Every registered model still gets the cheap contract (forward/backward, determinism, reset, data config,
fast_dev_run). The costly checks (12 Adam steps on real faces, ONNX export, Grad-CAM) run on one member of
each family: the variants below are the same classes with more or wider layers (``tests/test_families.py``
checks that each builds exactly the module types of its representative), so they add time, not coverage.
"""

from __future__ import annotations

import ferlab

#: variant -> the smallest member of its family, which the costly tests run instead
SIZE_VARIANTS = {
    "emonext_small": "emonext_tiny",
    "emonext_base": "emonext_tiny",
    "emonext_large": "emonext_tiny",
    "emonext_xlarge": "emonext_tiny",
    "vgg19": "vgg16",
    "cbam_resnet34": "cbam_resnet18",
    "resnet34": "resnet18",
}


def representatives() -> list[str]:
    """Every registered model but the size variants."""
    return [n for n in ferlab.list_models() if n not in SIZE_VARIANTS]
