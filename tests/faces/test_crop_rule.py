"""The one crop rule: prepare records it, training carries it into the model's spec, inference uses it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ferlab.errors import ConfigError
from ferlab.faces.crop import CROP_RULE_FILE, INFERENCE_RULE, PREPARE_RULE, CropRule, FaceCropper
from ferlab.faces.geometry import Face, crop_face


class FixedDetector:
    name = "fixed"

    def detect(self, img):
        return [Face((40, 30, 100, 90), 0.9)]


def test_rule_round_trips_and_checks():
    r = CropRule("haar", 0.25, True, False)
    assert CropRule.from_dict(r.to_dict()) == r
    assert r.replace(margin=None, detector="blazeface") == CropRule("blazeface", 0.25, True, False)
    with pytest.raises(ConfigError, match="margin"):
        CropRule(margin=-0.1)
    with pytest.raises(ConfigError, match="unknown key"):
        CropRule.from_dict({"detector": "haar", "zoom": 2})
    assert PREPARE_RULE != INFERENCE_RULE  # prepare: haar 0.2 aligned; inference: blazeface 0.1


def test_cropper_cuts_by_its_rule():
    img = np.random.default_rng(0).integers(0, 255, (160, 160, 3), dtype=np.uint8)
    c = FaceCropper(CropRule("fixed", 0.3), detector=FixedDetector())
    [(face, crop)] = c(img)
    assert np.array_equal(crop, crop_face(img, face.box, 0.3, square=True))


def test_prepared_crops_carry_their_rule_to_the_model_and_to_inference(tmp_path):
    from PIL import Image

    import ferlab
    from ferlab.engine.config import from_dict
    from ferlab.engine.trainer import Trainer
    from ferlab.faces.pipeline import FacePreprocessor, prepare_folder
    from ferlab.infer import Recognizer
    from ferlab.runtime.files import load_model

    raw = tmp_path / "raw"
    rng = np.random.default_rng(0)
    for cls in ("happy", "sad"):
        (raw / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(raw / cls / f"{i}.png")
    pre = FacePreprocessor(FixedDetector(), margin=0.15, size=48, align=False)
    prepare_folder(raw, tmp_path / "faces", pre, progress=False)
    rule = json.loads((tmp_path / "faces" / CROP_RULE_FILE).read_text())
    assert rule == {"detector": "fixed", "margin": 0.15, "align": False, "square": True}
    assert ferlab.load_dataset(f"folder:{tmp_path / 'faces'}").info["crop"] == rule

    cfg = from_dict({"model": "smallcnn_tiny", "dataset": f"folder:{tmp_path / 'faces'}", "val_split": None, "val_fraction": 0.25,
                     "test_splits": [], "epochs": 1, "batch_size": 2, "output_dir": str(tmp_path / "runs"),
                     "progress": False, "tensorboard": False, "precision": "fp32"})  # fmt: skip
    trainer = Trainer(cfg)
    assert trainer.model.spec.crop == rule
    trainer.fit()
    model, _, _ = load_model(trainer.run_dir / "model.safetensors")
    assert model.spec.crop == rule  # the rule survives the file
    r = Recognizer(model)
    assert r.crop_rule == CropRule.from_dict(rule)
    assert Recognizer(model, detector="haar", margin=0.05).crop_rule == CropRule("haar", 0.05, False, True)
    assert Recognizer("fast").crop_rule == INFERENCE_RULE  # FER2013 came as crops: no rule recorded


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_caches_keep_the_crop_rule(tmp_path, suffix):
    from ferlab.data.base import FERDataset, Split
    from ferlab.data.cache import load_cached, save_dataset

    sp = Split("train", np.zeros((2, 4, 4), np.uint8), np.array([0, 1]), ("a", "b"))
    rule = {"detector": "haar", "margin": 0.2, "align": True, "square": True}
    ds = FERDataset("x", ("a", "b"), {"train": sp}, info={"crop": rule})
    assert load_cached(save_dataset(ds, tmp_path / f"x{suffix}")).info["crop"] == rule


def test_a_damaged_crop_rule_names_the_file(tmp_path):
    import ferlab
    from ferlab.runtime.files import export_weights, load_model

    m = ferlab.create_model("smallcnn_tiny", num_classes=2, classes=("a", "b"))
    f = export_weights(m, tmp_path / "m.safetensors")
    from safetensors.torch import load_file, save_file

    from ferlab.models.spec import WEIGHTS_FORMAT

    meta = {
        "format": WEIGHTS_FORMAT,
        **m.spec.to_meta(),
        "crop": json.dumps({"detector": "haar", "margin": -1}),
    }
    save_file(load_file(str(f)), str(f), metadata=meta)
    with pytest.raises(ConfigError, match=r"m\.safetensors.*margin"):
        load_model(f)
