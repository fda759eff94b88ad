"""Each protocol runs end to end on a tiny budget and writes its table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ferlab.engine import protocols
from ferlab.engine.config import from_dict
from ferlab.errors import ConfigError


@pytest.fixture
def folder_dataset(tmp_path):
    """A 3-class ImageFolder of 48x48 faces-like images with train/ and test/ splits."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for split, n in (("train", 20), ("test", 6)):
        for c, cls in enumerate(("happy", "sad", "angry")):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(rng.normal(60 + 60 * c, 20, (48, 48)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")
    return root


def _cfg(tmp_path, root, **kw):
    d = {"model": "smallcnn_tiny", "dataset": f"folder:{root}", "dataset_kwargs": {"size": 48}, "val_split": None,
         "val_fraction": 0.25, "test_splits": ["test"], "epochs": 1, "batch_size": 8, "progress": False,
         "tensorboard": False, "scheduler": "none", "output_dir": str(tmp_path / "runs"), "name": "p"}  # fmt: skip
    d.update(kw)
    return from_dict(d)


def test_kfold(tmp_path, folder_dataset):
    res = protocols.run_kfold(_cfg(tmp_path, folder_dataset), k=3)
    assert len(res["rows"]) == 3 and sum(r["test"] for r in res["rows"]) == 60
    assert 0 <= res["summary"]["accuracy_mean"] <= 1
    assert (tmp_path / "runs" / "p" / "protocol.md").read_text().count("| 0 |") == 1


def test_repeats_acc_sta(tmp_path, folder_dataset):
    res = protocols.run_repeats(_cfg(tmp_path, folder_dataset), seeds=[0, 1])
    acc = [r["accuracy"] for r in res["rows"]]
    assert res["summary"]["Acc"] == pytest.approx(np.mean(acc))
    assert res["summary"]["Sta"] == pytest.approx(np.std(acc))
    saved = json.loads((tmp_path / "runs" / "p" / "protocol.json").read_text())
    assert saved["summary"]["Acc"] == pytest.approx(res["summary"]["Acc"])


def test_transfer(tmp_path, folder_dataset):
    pre = _cfg(tmp_path, folder_dataset)
    fine = _cfg(tmp_path, folder_dataset, lr=0.001)
    res = protocols.run_transfer(pre, fine)
    assert [r["stage"] for r in res["rows"]] == ["pre-train", "fine-tune"]
    assert (tmp_path / "runs" / "p" / "stage2_finetune" / "model.safetensors").is_file()


def test_ablation(tmp_path, folder_dataset):
    cfg = _cfg(tmp_path, folder_dataset, model="fernet_xs")
    with pytest.raises(ConfigError, match="no switch"):
        protocols.run_ablation(cfg, ["lbp"])
    res = protocols.run_ablation(
        cfg, ["drop_rate"], settings={"no dropout": {"drop_rate": 0.0}, "dropout": {"drop_rate": 0.5}}
    )
    assert [r["setting"] for r in res["rows"]] == ["no dropout", "dropout"]
