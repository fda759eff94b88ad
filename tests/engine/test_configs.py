"""Every training recipe in ``configs/``: it loads, names a real model and dataset, and trains one step.

The step runs the exact recipe (optimiser, scheduler, loss, sampler, class weights, augmentation, offline
expansion, EMA, ...) on tiny random in-memory data at the model's ``test_size``; only the data, the input
size, the batch size and the output folder are overridden. Checkpoint files are not written (their state
is still assembled): the engine tests cover checkpoints, and writing the optimiser state of a 138 M
parameter model twice per recipe would dominate the run time. The step runs on one thread: with two
OpenMP threads on a busy 2-core machine, spin-waiting makes these tiny steps 10-30x slower.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import ferlab
from ferlab import labels as L
from ferlab.data.registry import DATASETS
from ferlab.engine import Trainer, load_config
from ferlab.engine import optim as optim_mod
from ferlab.runtime.files import export_weights
from ferlab.transforms.expand import expand

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("**/*.yaml"))
IDS = [str(p.relative_to(CONFIG_DIR)) for p in CONFIGS]
RUN_DATASETS = {
    (c := load_config(p)).run_name: c.dataset for p in CONFIGS
}  # runs/<name> -> its training data
# every scheduler_kwargs key the scheduler factory reads (unknown keys would be silently ignored)
SCHEDULER_KEYS = set().union(*optim_mod.SCHEDULER_KWARGS.values())
GRAY_DATASETS = ("fer2013", "ferplus", "ferplus7")  # stored as 48x48 grayscale whatever the model


def _num_classes(dataset: str) -> int:
    return 8 if dataset in ("ferplus", "affectnet", "ckplus") else 7


def _test_size(model: str) -> int:
    info = ferlab.model_info(model)
    return info.test_size or info.data.input_size[1]


def test_configs_exist_with_unique_names():
    assert len(CONFIGS) >= 10, f"expected the papers' recipes under {CONFIG_DIR}"
    names = [load_config(p).run_name for p in CONFIGS]
    assert len(set(names)) == len(names), f"two recipes share a run folder name: {sorted(names)}"
    assert {"step_size", "gamma", "factor", "patience", "step_size_up"} <= SCHEDULER_KEYS


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_config_is_valid(path):
    text = path.read_text()
    assert text.startswith("#"), f"{path}: start with a comment block citing the paper"
    cfg = load_config(path)
    assert cfg.name, "give every recipe an explicit run folder name"
    assert cfg.output_dir == "runs"
    assert cfg.dataset in DATASETS
    assert path.parent.name == cfg.model, "layout is configs/<model>/<dataset>.yaml"
    assert cfg.dataset.startswith(path.stem.split("_")[0]), "layout is configs/<model>/<dataset>.yaml"
    unknown = set(cfg.scheduler_kwargs) - SCHEDULER_KEYS
    assert not unknown, f"scheduler_kwargs {sorted(unknown)} are not read by build_scheduler"
    # recipes run offline: no downloaded weights. Starting weights and teachers are a file shipped in the
    # repository or the output of another recipe here (runs/<its name>/...), so a chain of runs reproduces
    for key in ("pretrained", "teacher"):
        ref = getattr(cfg, key)
        if ref is None or (CONFIG_DIR.parent / ref).is_file():
            continue
        parts = Path(ref).parts
        assert parts[0] == "runs" and len(parts) >= 3, (
            f"{key}={ref!r} is neither a file in the repository nor a run of a recipe here; pass downloaded "
            "weights as an override"
        )
        assert parts[1] in RUN_DATASETS and parts[1] != cfg.run_name, (
            f"{key}={ref!r}: no other recipe writes {parts[1]}"
        )


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_config_model_accepts_kwargs(path):
    cfg = load_config(path)
    assert cfg.model in ferlab.list_models()
    info = ferlab.model_info(cfg.model)
    bad = set(cfg.model_kwargs) - set(info.switches)
    assert not bad, f"{cfg.model} has no switch(es) {sorted(bad)}; valid: {info.switches}"
    # the values themselves are checked by building the model in the training step below


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_config_trains_one_step(path, tmp_path, restore_threads):
    model = load_config(path).model
    size = _test_size(model)
    overrides = [f"img_size={size}", "batch_size=4", "eval_batch_size=4", "fast_dev_run=true",
                 f"output_dir={tmp_path}", "resume=false", "progress=false", "tensorboard=false", "threads=1"]  # fmt: skip
    cfg = load_config(path, overrides)
    classes = L.class_names(_num_classes(cfg.dataset))
    # weights from earlier runs (a teacher, starting weights) are not in a fresh clone: use random ones with
    # the class count of the run that writes them (a FER2013 start for a FER+ recipe has a 7-class head)
    stand_ins = []
    for key in ("teacher", "pretrained"):
        ref = str(getattr(cfg, key) or "")
        if ref.startswith("runs/"):
            src_classes = L.class_names(_num_classes(RUN_DATASETS[Path(ref).parts[1]]))
            random_model = ferlab.create_model(model, num_classes=len(src_classes), img_size=size)
            path_r = export_weights(random_model, tmp_path / f"{key}.safetensors", src_classes)
            stand_ins.append(f"{key}={path_r}")
    if stand_ins:
        cfg = load_config(path, [*overrides, *stand_ins])
    rgb = cfg.dataset not in GRAY_DATASETS and ferlab.model_info(model).data.color == "rgb"
    rng = np.random.default_rng(0)

    def split(name, n):
        shape = (n, size, size, 3) if rgb else (n, size, size)
        labels = np.arange(n) % len(classes)  # every class present (class weights, weighted sampling)
        return ferlab.Split(name, rng.integers(0, 256, shape, dtype=np.uint8), labels, classes)

    train = expand(split("train", len(classes)), cfg.expansion, seed=cfg.seed)  # as load_training_data does
    splits = {"train": train, "val": split("val", 4), **{f"test:{t}": split(t, 4) for t in cfg.test_splits}}

    tr = Trainer(cfg, splits, classes)
    for k, v in cfg.model_kwargs.items():
        assert tr.model.model_kwargs[k] == v
    summary = tr.fit()
    assert summary["epochs_run"] == 1
    assert math.isfinite(tr.history[0]["train_loss"])
    assert tr.step == 1
    saved = load_config(tmp_path / cfg.run_name / "config.yaml")  # the resolved recipe round-trips
    assert saved.to_dict() == cfg.to_dict()
