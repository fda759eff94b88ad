"""Grad-CAM on every registered model (random init, batch 1) and the ``ferlab explain`` outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ferlab
from families import representatives
from ferlab.cli import main
from ferlab.models import model_info

pytest.importorskip("pytorch_grad_cam")

from ferlab.analysis.explain import CamExplainer, overlay, split_args


def _side(name: str) -> int:
    """The unit tests' input side, at least 64 for 224-px models so the last map is 2x2, not 1x1."""
    info = model_info(name)
    native = info.data.input_size[1]
    return native if native <= 64 else max(info.test_size or native, 64)


@pytest.mark.parametrize("name", representatives())  # size variants: tests/families.py
def test_gradcam_map_every_model(name):
    torch.manual_seed(0)
    side = _side(name)
    model = ferlab.create_model(name, num_classes=7, img_size=side)
    crop = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    with CamExplainer(model, "gradcam") as ex:
        cam, probs = ex(crop)
        assert cam.shape == (side, side)
        assert cam.dtype == np.float32
        assert np.isfinite(cam).all() and cam.min() >= 0.0 and cam.max() <= 1.0
        assert probs.shape == (7,) and abs(float(probs.sum()) - 1) < 1e-4
        cam2, _ = ex(crop, target=3)
        assert cam2.shape == (side, side)
    # the hooks are released: a plain forward afterwards keeps no activations
    assert not ex.cam.activations_and_grads.handles


def test_gradcam_plus_plus_and_overlay(tiny_weights):
    from ferlab.runtime.files import load_model

    model, _, _ = load_model(tiny_weights)
    crop = np.random.default_rng(1).integers(0, 256, (60, 60, 3), dtype=np.uint8)
    with CamExplainer(model, "gradcam++") as ex:
        cam, _ = ex(crop)
    assert cam.shape == (48, 48) and cam.min() >= 0 and cam.max() <= 1
    img = overlay(crop, cam, size=96)
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8


def test_split_args_sorts_images_from_checkpoints(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"")
    (tmp_path / "photos").mkdir()
    ck, im = split_args(["a.safetensors", str(run), "face.jpg", str(tmp_path / "photos")], ["x.png"])
    assert ck == ["a.safetensors", str(run)]
    assert im == ["x.png", "face.jpg", str(tmp_path / "photos")]


def test_cli_explain_dataset_grid(tiny_weights, tmp_path, fer2013):
    out = tmp_path / "explain"
    rc = main(["explain", "--checkpoint", str(tiny_weights), str(tiny_weights), "--dataset", "fer2013",
               "--limit", "2", "--out", str(out)])  # fmt: skip
    assert rc == 0
    grid = out / "explain_grid.png"
    assert grid.is_file() and grid.stat().st_size > 1000
    from PIL import Image

    w, h = Image.open(grid).size
    assert w > h  # 3 columns (face + 2 checkpoints) x 2 rows
    meta = json.loads((out / "explain.json").read_text())
    assert len(meta["faces"]) == 2 and meta["checkpoints"] == ["tiny", "tiny#2"]
    for f in meta["faces"]:
        assert f["true"] in fer2013.classes
        for r in f["checkpoints"].values():
            assert r["predicted"] in fer2013.classes
            assert all((out / p).is_file() for p in r["overlays"].values())


def test_cli_explain_photo_and_crop(tiny_weights, tmp_path):
    from PIL import Image
    from skimage import data

    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(photo)
    crop = tmp_path / "crop.png"
    Image.fromarray(np.full((48, 48), 120, np.uint8)).save(crop)
    out = tmp_path / "ex"
    # checkpoints and images in any order after --checkpoint; a detected face, then every class's map
    assert (
        main(["explain", "--checkpoint", str(tiny_weights), str(photo), "--class", "all", "--out", str(out)])
        == 0
    )
    meta = json.loads((out / "explain.json").read_text())
    assert len(meta["faces"]) == 1 and len(meta["faces"][0]["checkpoints"]["tiny"]["overlays"]) == 7
    out2 = tmp_path / "ex2"
    assert main(["explain", "--checkpoint", str(tiny_weights), str(crop), "--no-detect", "--class", "happy",
                 "--method", "scorecam", "--out", str(out2)]) == 0  # fmt: skip
    meta = json.loads((out2 / "explain.json").read_text())
    assert list(meta["faces"][0]["checkpoints"]["tiny"]["overlays"]) == ["happy"]
    # a blank crop has no face: detection skips it and the command says so
    assert main(["explain", "--checkpoint", str(tiny_weights), str(crop), "--out", str(tmp_path / "e3")]) == 2
