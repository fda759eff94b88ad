"""The models shipped inside the package: load offline by name and score above their floors on real faces.

Floors (issue 5): default 70 %, fast 64 % on a fixed 500-image sample of FER2013 PrivateTest; the FER+ model
85 % on a fixed 500-image sample of FER+ PrivateTest (majority labels, eight classes). Each sample is drawn
once with a fixed seed, so every run scores the same images.
"""

from __future__ import annotations

import numpy as np
import pytest

from ferlab.inference import PRETRAINED, list_pretrained

#: shipped name -> (dataset of its test sample, accuracy floor)
FLOORS = {"default": ("fer2013", 0.70), "fast": ("fer2013", 0.64), "ferplus": ("ferplus", 0.85)}
SHIPPED = list_pretrained(available_only=True)


def test_floors_cover_every_shipped_name():
    assert set(FLOORS) == set(PRETRAINED)


def test_at_least_one_model_is_shipped():
    assert SHIPPED, f"no shipped weights in the package (expected some of {list(PRETRAINED)})"


@pytest.fixture(scope="module")
def private_samples(fer2013, data_root):
    """dataset name -> a fixed 500-face sample of its PrivateTest (images, labels, classes)."""
    import ferlab

    out = {}
    for name in sorted({ds for ds, _ in FLOORS.values()}):
        test = (fer2013 if name == "fer2013" else ferlab.load_dataset(name, data_root))["test"]
        idx = np.sort(np.random.default_rng(2026).choice(len(test.labels), 500, replace=False))
        out[name] = test.images[idx], test.labels[idx], test.classes
    return out


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_scores_above_floor(name, private_samples):
    from ferlab import Recognizer

    dataset, floor = FLOORS[name]
    images, labels, classes = private_samples[dataset]
    r = Recognizer(name, precision="fp32")
    assert set(r.classes) == set(classes), f"{name} predicts {r.classes}, its test set has {classes}"
    faces = r.predict_faces(images)
    probs = np.array([[f.probs[c] for c in r.classes] for f in faces])
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    acc = np.mean([f.label == classes[y] for f, y in zip(faces, labels)])
    assert acc >= floor, f"{name}: {acc:.3f} on the 500-face {dataset} PrivateTest sample, floor {floor}"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_are_small_and_described(name):
    from ferlab.inference import load_default, pretrained_path

    assert pretrained_path(name).stat().st_size <= 25 * 2**20
    model = load_default(name)
    assert model.classes and model.data_config.input_size[-1] >= 32


def test_unknown_or_missing_shipped_name_is_one_line():
    from ferlab import ConfigError
    from ferlab.inference import load_default

    with pytest.raises(ConfigError, match="unknown shipped model 'nope'; valid: default, fast, ferplus"):
        load_default("nope")
