"""The one model description: set by create_model/load_model, written into every format, read back whole."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import ferlab
from ferlab.models import ModelSpec, resolve_data_config
from ferlab.runtime.files import export_weights, load_model


def test_spec_round_trips_through_dict_and_meta():
    m = ferlab.create_model(
        "smallcnn_tiny", num_classes=3, classes=("a", "b", "c"), crop={"detector": "haar"}
    )
    s = m.spec
    full = {
        "detector": "haar",
        "margin": 0.1,
        "align": False,
        "square": True,
    }  # the rule's defaults filled in
    assert (s.architecture, s.classes, s.crop) == ("smallcnn_tiny", ("a", "b", "c"), full)
    assert s.kwargs["num_classes"] == 3 and s.data_config == m.data_config
    assert ModelSpec.from_dict(s.to_dict()) == s
    meta = s.to_meta()
    assert all(isinstance(v, str) for v in meta.values())
    assert ModelSpec.from_meta(meta) == s
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.classes = ("x",)


def test_resolve_data_config_is_pure_and_matches_create_model():
    for name, kw in (
        ("smallcnn_tiny", {}),
        ("resemotenet", {"img_size": 48}),
        ("aemt", {"in_chans": 3, "img_size": 64, "lbp": False}),
    ):
        with torch.device("meta"):
            m = ferlab.create_model(name, **kw)
        assert resolve_data_config(name, kw.get("in_chans"), kw.get("img_size")) == m.data_config


def test_class_names_must_fit_the_classifier():
    with pytest.raises(ferlab.ConfigError, match="2 class names for num_classes=7"):
        ferlab.create_model("smallcnn_tiny", classes=("a", "b"))


def test_weights_file_carries_the_spec(tmp_path):
    m = ferlab.create_model(
        "smallcnn_tiny", num_classes=2, classes=("x", "y"), crop={"detector": "haar", "margin": 0.2}
    )
    f = export_weights(m, tmp_path / "m.safetensors")
    back, classes, _ = load_model(f)
    assert back.spec == m.spec and classes == ("x", "y") and back.classes == ("x", "y")
