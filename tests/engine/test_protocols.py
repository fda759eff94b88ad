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


def test_named_ablation_table_with_repeats_on_a_paper_model(tmp_path, folder_dataset):
    """Paper 002's table, two of its rows (the joint loss included), two repeats each, at a tiny input."""
    table = {
        "_scaling": "32 px, 1 epoch, 60 images (test)",
        "row1": {"fusion": False, "gcca": False, "pd": False, "ra": False, "loss": "ce",
                 "paper": {"acc": 69.79, "sta": 0.38}},
        "row6": {"fusion": True, "gcca": True, "pd": True, "ra": True, "loss": "island",
                 "paper": {"acc": 74.08, "sta": 0.24}},
    }  # fmt: skip
    cfg = _cfg(
        tmp_path,
        folder_dataset,
        model="vgg16_cara",
        img_size=32,
        ablation={"table1": table},
        lr=0.001,
        monitor="val_loss",
    )
    with pytest.raises(ConfigError, match="no ablation table 'table9'"):
        protocols.run_ablation(cfg, table="table9")
    res = protocols.run_ablation(cfg, table="table1", repeats=2)
    rows = {r["setting"]: r for r in res["rows"]}
    assert list(rows) == ["row1", "row6"]
    for r in rows.values():
        assert r["runs"] == 2 and len(r["accs"]) == 2
        assert r["Acc"] == pytest.approx(100 * np.mean(r["accs"])) and r["Sta"] == pytest.approx(
            100 * np.std(r["accs"])
        )
    assert rows["row1"]["gcca"] == "✗" and rows["row6"]["gcca"] == "✓" and rows["row6"]["loss"] == "island"
    assert rows["row6"]["params"] > rows["row1"]["params"] and rows["row6"]["paper_Acc"] == 74.08
    from ferlab.models import create_model
    from ferlab.models.profile import count_params

    nc = json.loads((tmp_path / "runs" / "p" / "ablation_row1_seed0" / "summary.json").read_text())[
        "num_classes"
    ]
    assert rows["row1"]["params"] == count_params(  # counted with the head as trained, not a stand-in
        create_model("vgg16_cara", num_classes=nc, img_size=32, fusion=False, gcca=False, pd=False, ra=False)
    )
    for r in rows.values():  # monitored val_loss: the validation accuracy comes from each run's metrics.csv
        assert 0 <= r["val_acc"] <= 1
    runs = tmp_path / "runs" / "p"
    assert {p.name for p in runs.iterdir() if p.is_dir()} == {
        "ablation_row1_seed0",
        "ablation_row1_seed1",
        "ablation_row6_seed0",
        "ablation_row6_seed1",
    }
    import yaml

    c6 = yaml.safe_load((runs / "ablation_row6_seed1" / "config.yaml").read_text())
    assert c6["loss"] == "island" and c6["seed"] == 1 and c6["model_kwargs"]["gcca"] is True
    md = (runs / "protocol.md").read_text()
    assert (
        "Scale: 32 px, 1 epoch" in md
        and "| setting | fusion | gcca | pd | ra | loss |" in md
        and "paper_Acc" in md
    )


def test_transfer_reinitialises_the_head_unless_told(tmp_path, folder_dataset):
    from safetensors import safe_open

    pre = _cfg(tmp_path, folder_dataset)
    res = protocols.run_transfer(pre, _cfg(tmp_path, folder_dataset, lr=0.001))
    d = tmp_path / "runs" / "p" / "stage1_pretrain"
    with (
        safe_open(str(d / "model.safetensors"), "pt") as a,
        safe_open(str(d / "model_without_head.safetensors"), "pt") as b,
    ):
        dropped = set(a.keys()) - set(b.keys())
    assert dropped and all("head" in k or "fc" in k or "classifier" in k for k in dropped), dropped
    assert res["summary"]["head"] == "re-initialised"
    res2 = protocols.run_transfer(_cfg(tmp_path, folder_dataset, name="q"), _cfg(tmp_path, folder_dataset, name="q"),
                                  reinit_head=False)  # fmt: skip
    assert res2["summary"]["head"] == "carried over when the classes match"
    assert not (tmp_path / "runs" / "q" / "stage1_pretrain" / "model_without_head.safetensors").exists()


def test_kfold_selects_on_an_inner_split_and_keeps_subjects_apart():
    from ferlab import Split
    from ferlab.data.splits import inner_split, kfold

    rng = np.random.default_rng(0)
    subjects = np.repeat(np.arange(30), 4)
    sp = Split("train", rng.integers(0, 255, (120, 8, 8), dtype=np.uint8), rng.integers(0, 3, 120),
               ("happy", "sad", "angry"), meta={"subject": subjects, "i": np.arange(120)})  # fmt: skip
    for tr, te in kfold(sp, k=5, seed=0, group_key="subject"):
        a, v = inner_split(tr, 0.2, seed=0, group_key="subject")
        ids = [set(x.meta["i"]) for x in (a, v, te)]
        assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
        assert len(ids[0]) + len(ids[1]) + len(ids[2]) == 120
        subj = [set(x.meta["subject"]) for x in (a, v, te)]
        assert not (subj[0] & subj[1]) and not (subj[0] & subj[2]) and not (subj[1] & subj[2])


def test_repeats_without_a_test_split_hold_one_out(tmp_path, folder_dataset):
    """CK+-style data (no test split): one held-out part carved once, the same for every seed."""
    cfg = _cfg(tmp_path, folder_dataset, test_splits=[])
    res = protocols.run_repeats(cfg, seeds=[0, 1])
    assert res["summary"]["test_split"] == "heldout" and len(res["rows"]) == 2
    assert all(0 <= r["accuracy"] <= 1 for r in res["rows"])
    a = (tmp_path / "runs" / "p" / "seed0" / "eval" / "heldout.json").read_text()
    b = (tmp_path / "runs" / "p" / "seed1" / "eval" / "heldout.json").read_text()
    import json as _json

    assert sum(_json.loads(a)["confusion"][0]) + sum(sum(r) for r in _json.loads(a)["confusion"][1:]) == sum(
        sum(r) for r in _json.loads(b)["confusion"]
    )  # the same held-out faces
