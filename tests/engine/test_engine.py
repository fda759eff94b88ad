"""The Trainer, configs, losses, metrics and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ferlab
from ferlab import labels as L
from ferlab.engine import (
    Trainer,
    TrainingDiverged,
    acc_sta,
    classification_metrics,
    load_checkpoint,
    load_config,
    load_model,
)
from ferlab.engine.config import from_dict
from ferlab.engine.losses import IslandLoss
from ferlab.errors import ConfigError, DataError
from ferlab.runtime.metrics import expected_calibration_error


def _random_splits(n=64, side=48, classes=L.SEVEN, seed=0):
    rng = np.random.default_rng(seed)

    def mk(name, k):
        return ferlab.Split(
            name,
            rng.integers(0, 255, (k, side, side), dtype=np.uint8),
            rng.integers(0, len(classes), k),
            classes,
        )

    return {"train": mk("train", n), "val": mk("val", 32), "test:test": mk("test", 32)}


def _cfg(tmp_path, **kw):
    base = {"model": "smallcnn_tiny", "epochs": 1, "batch_size": 16, "progress": False, "tensorboard": False,
            "output_dir": str(tmp_path), "name": "run", "scheduler": "none", "lr": 0.01}  # fmt: skip
    base.update(kw)
    return from_dict(base)


# ---------------------------------------------------------------- config


def test_config_layers_and_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: smallcnn\nepochs: 7\naugment:\n  hflip: 0.3\n")
    cfg = load_config(p, ["epochs=9", "augment.rotate=5", "lr=1"])
    assert cfg.model == "smallcnn" and cfg.epochs == 9 and cfg.augment == {"hflip": 0.3, "rotate": 5}
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    with pytest.raises(ConfigError, match=r"unknown config key.*valid"):
        load_config(None, ["epoch=3"])
    with pytest.raises(ConfigError, match=r"'epochs'.*expected"):
        load_config(None, ["epochs=three"])
    with pytest.raises(ConfigError, match="valid: sgd"):
        load_config(None, ["optimizer=adamax"])
    with pytest.raises(ConfigError, match="unknown augmentation"):
        load_config(None, ["augment.flip=1"])
    with pytest.raises(ConfigError, match="label_smoothing must be 0"):
        load_config(None, ["loss=soft_ce", "label_smoothing=0.1"])
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(None, ["epochs"])


def test_channel_mismatch_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="in_chans"):
        load_config(None, ["in_chans=2"])


# ---------------------------------------------------------------- losses and metrics


def test_island_loss_known_answer():
    loss = IslandLoss(num_classes=2, dim=2, lambda1=7.0)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    emb = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    y = torch.tensor([0, 1])
    # centre term: 0.5 * mean(0, 4) = 1; pair term: two ordered pairs, cos = 0 -> (0 + 1) * 2 = 2
    assert loss(emb, y).item() == pytest.approx(1.0 + 7.0 * 2.0)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))  # opposite centres: cos = -1 -> 0
    assert loss.pair_term().item() == pytest.approx(0.0, abs=1e-6)


def test_acc_sta_formula():
    acc, sta = acc_sta([0.70, 0.72, 0.74])
    assert acc == pytest.approx(0.72)
    assert sta == pytest.approx(np.sqrt(((0.02**2) * 2) / 3))  # population std (divide by N)


def test_metrics_known_answers():
    y = np.array([0, 0, 1, 1, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 0]] * 0.8 + 0.2 / 3
    m = classification_metrics(y, probs, ("a", "b", "c"))
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["per_class"]["a"]["recall"] == pytest.approx(0.5)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["f1"] == 0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0) / 3)
    # ECE: every confidence is 0.8667, accuracy 0.6 -> ECE = 0.2667
    assert expected_calibration_error(probs, y) == pytest.approx(0.8 + 0.2 / 3 - 0.6)


# ---------------------------------------------------------------- trainer


def test_fast_dev_run(tmp_path):
    cfg = _cfg(tmp_path, fast_dev_run=True)
    s = Trainer(cfg, _random_splits(), L.SEVEN).fit()
    assert s["epochs_run"] == 1
    assert (tmp_path / "run" / "metrics.csv").is_file()
    assert not (tmp_path / "run" / "last.pt").exists()  # smoke runs write no checkpoints


def test_resume_continues_exactly(tmp_path):
    """save -> kill -> resume gives the same weights and optimiser state as an uninterrupted run."""
    splits = _random_splits(n=96)
    common = dict(optimizer="adamw", scheduler="onecycle", epochs=3, lr=0.003, augment={"rotate": 5.0})
    full = Trainer(_cfg(tmp_path, name="full", **common), splits, L.SEVEN)
    full.fit()
    # the "killed" run: 2 epochs, with a recipe that says 3 epochs in total (so the schedule is the same)
    part = Trainer(_cfg(tmp_path, name="part", **common), splits, L.SEVEN)
    part.cfg.epochs = 2
    part.fit()
    ck = load_checkpoint(tmp_path / "part" / "last.pt")
    assert ck["epoch"] == 2
    resumed = Trainer(_cfg(tmp_path, name="part", **common), splits, L.SEVEN)
    assert resumed.epoch == 2 and resumed.step == ck["step"]
    st = resumed.optimizer.state_dict()["state"]
    for k, v in ck["optimizer"]["state"].items():
        torch.testing.assert_close(st[k]["exp_avg"], v["exp_avg"])
    resumed.fit()
    a_sd = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b_sd = load_checkpoint(tmp_path / "part" / "last.pt")["model"]
    assert load_checkpoint(tmp_path / "part" / "last.pt")["epoch"] == 3
    for k in a_sd:
        torch.testing.assert_close(a_sd[k], b_sd[k], rtol=1e-5, atol=1e-6)


def test_cpu_budget_stops_mid_epoch_and_records_it(tmp_path):
    """A budget used up inside an epoch ends that epoch after the step that crossed it (not after the whole,
    possibly 40-minute, epoch): the run validates, checkpoints and reports the cut; the next epoch never starts."""
    from ferlab.engine.history import read_metrics

    splits = _random_splits(n=96)  # 6 steps of 16 per epoch
    s = Trainer(_cfg(tmp_path, epochs=3, max_cpu_minutes=1e-9), splits, L.SEVEN).fit()
    assert s["epochs_run"] == 1 and s["budget_reached"]
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == 1 and rows[0]["cut_short"] == "True" and rows[0]["train_images"] == "16"
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
    # a cut in the last epoch is still a stop by the budget
    s = Trainer(_cfg(tmp_path, name="last", epochs=1, max_minutes=1e-9), splits, L.SEVEN).fit()
    assert (
        s["epochs_run"] == 1
        and s["budget_reached"]
        and read_metrics(tmp_path / "last")[0]["cut_short"] == "True"
    )
    # without a budget the epoch runs all its steps and is not marked
    s = Trainer(_cfg(tmp_path, name="free", epochs=1), splits, L.SEVEN).fit()
    rows = read_metrics(tmp_path / "free")
    assert rows[0]["cut_short"] == "False" and rows[0]["train_images"] == "96"


def test_resume_refuses_changed_settings_and_keeps_config_yaml(tmp_path):
    """A rerun under the same name with other hyperparameters (or another model) is refused before it writes
    anything; a longer run (epochs, budget, threads) resumes; resume_changed_ok=true overrides the check."""
    splits = _random_splits(n=48)
    Trainer(_cfg(tmp_path, epochs=1, lr=0.01), splits, L.SEVEN).fit()
    cfg_file = tmp_path / "run" / "config.yaml"
    before = cfg_file.read_text()
    with pytest.raises(ConfigError, match=r"other settings \(lr: 0.01 -> 0.5; label_smoothing: 0.0 -> 0.1\)"):
        Trainer(_cfg(tmp_path, epochs=1, lr=0.5, label_smoothing=0.1), splits, L.SEVEN)
    with pytest.raises(ConfigError, match="checkpoint of 'smallcnn_tiny', but the config trains 'fernet_xs'"):
        Trainer(_cfg(tmp_path, model="fernet_xs", epochs=1), splits, L.SEVEN)
    assert cfg_file.read_text() == before  # neither refused rerun touched the run's description
    longer = Trainer(_cfg(tmp_path, epochs=2, lr=0.01, threads=1, max_minutes=5.0), splits, L.SEVEN)
    assert longer.epoch == 1 and longer.fit()["epochs_run"] == 2
    forced = Trainer(_cfg(tmp_path, epochs=3, lr=0.02, resume_changed_ok=True), splits, L.SEVEN)
    assert forced.epoch == 2 and "lr: 0.02" in cfg_file.read_text()


def test_empty_evaluation_split_is_refused_before_training(tmp_path):
    splits = _random_splits(n=32)
    splits["test:test"] = splits["test:test"].subset(np.arange(0))
    with pytest.raises(DataError, match="the test split 'test' of 'fer2013' is empty"):
        Trainer(_cfg(tmp_path, epochs=1), splits, L.SEVEN)
    assert not (tmp_path / "run").exists()


def test_export_is_the_best_epoch_and_says_so(tmp_path):
    """model.safetensors holds the best epoch's weights, and its metadata names that epoch, not the last."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    tr = Trainer(_cfg(tmp_path, epochs=3), _random_splits(n=48), L.SEVEN)
    validate, calls = tr.validate, []

    def falling_accuracy(
        split, *args
    ):  # every validation scores lower than the one before: epoch 1 is the best
        m = validate(split, *args)
        calls.append(split)
        m["accuracy"] = 1.0 / len(calls)
        return m

    tr.validate = falling_accuracy
    tr.fit()
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] == 1 and load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 3
    with safe_open(str(tmp_path / "run" / "model.safetensors"), "pt") as f:
        assert f.metadata()["epoch"] == "1"
    exported = load_file(str(tmp_path / "run" / "model.safetensors"))
    for k, v in best["model"].items():
        torch.testing.assert_close(exported[k], v)


def test_nan_loss_stops_with_message(tmp_path):
    splits = _random_splits()
    splits["train"].images[:] = 0
    tr = Trainer(_cfg(tmp_path, lr=1e30, epochs=3, optimizer="sgd"), splits, L.SEVEN)
    with pytest.raises(TrainingDiverged, match=r"epoch \d+, step \d+"):
        tr.fit()


@pytest.mark.parametrize("loss", ["island", "center"])
def test_island_and_center_training_runs(tmp_path, loss):
    cfg = _cfg(tmp_path, loss=loss, fast_dev_run=True)
    tr = Trainer(cfg, _random_splits(), L.SEVEN)
    c0 = tr.aux_loss.centers.detach().clone()
    tr.fit()
    assert not torch.equal(c0, tr.aux_loss.centers.detach())


def test_checkpoint_is_weights_only_and_exports(tmp_path):
    Trainer(_cfg(tmp_path, epochs=1), _random_splits(), L.SEVEN).fit()
    ck = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert ck["model_name"] == "smallcnn_tiny" and ck["classes"] == list(L.SEVEN)
    model, classes, _ = load_model(tmp_path / "run" / "model.safetensors")
    assert classes == L.SEVEN and model.data_config.input_size == (1, 48, 48)
    x = torch.randn(2, 1, 48, 48)
    ref, _, _ = load_model(tmp_path / "run" / "best.pt")
    torch.testing.assert_close(model(x), ref(x))
    bad = tmp_path / "evil.pt"
    torch.save({"format": "ferlab-checkpoint", "obj": object()}, bad)
    with pytest.raises(ConfigError, match="not a loadable"):
        load_checkpoint(bad)


@pytest.mark.parametrize("name", ferlab.list_models())
def test_fast_dev_run_every_model(tmp_path, name):
    info = ferlab.model_info(name)
    size = info.test_size or info.data.input_size[1]
    splits = _random_splits(n=8, side=size)
    cfg = _cfg(tmp_path, model=name, img_size=size, fast_dev_run=True, batch_size=4, eval_batch_size=8)
    s = Trainer(cfg, splits, L.SEVEN).fit()
    assert s["epochs_run"] == 1


def test_real_fer2013_small_run_beats_chance(tmp_path, fer2013):
    """6,000 FER2013 training images, 4 epochs, the tiny CNN: clearly above chance (> 30 %) on PublicTest.

    (smallcnn_tiny, 0.045 GFLOP: 45 % here in 30 s on an AVX2-only CPU in fp32; smallcnn took 140 s.)

    (Always answering the largest class, happy, scores 24.9 % on PublicTest.)"""
    tr = fer2013["train"].subset(np.arange(6000))
    splits = {
        "train": tr,
        "val": fer2013["val"].subset(np.arange(1000)),
        "test:test": fer2013["test"].subset(np.arange(500)),
    }
    flip_only = {
        "hflip": 0.5,
        "rotate": 0.0,
        "scale": [1.0, 1.0],
        "translate": 0.0,
        "brightness": 0.0,
        "contrast": 0.0,
        "erasing": 0.0,
    }
    cfg = _cfg(tmp_path, model="smallcnn_tiny", epochs=4, batch_size=32, optimizer="adamw", lr=0.002, scheduler="onecycle",
               augment=flip_only, precision="auto", channels_last=True)  # fmt: skip
    s = Trainer(cfg, splits, L.SEVEN).fit()
    assert s["best_val_acc"] > 0.30, s


def test_distillation_from_a_trained_teacher(tmp_path):
    splits = _random_splits()
    Trainer(_cfg(tmp_path, name="teacher", epochs=1), splits, L.SEVEN).fit()
    teacher = tmp_path / "teacher" / "model.safetensors"
    tr = Trainer(
        _cfg(tmp_path, name="student", model="fernet_xs", teacher=str(teacher), kd_alpha=0.7), splits, L.SEVEN
    )
    assert type(tr.task).__name__ == "DistillationTask"
    t0 = [p.detach().clone() for p in tr.task.teacher.parameters()]
    tr.fit()
    assert all(
        torch.equal(a, b) for a, b in zip(t0, tr.task.teacher.parameters())
    )  # the teacher never changes
    assert "train_kd" in tr.history[-1]
    with pytest.raises(ConfigError, match="combines with loss 'ce' only"):
        _cfg(tmp_path, teacher=str(teacher), loss="island")


def test_distillation_from_cached_teacher_predictions(tmp_path, capsys):
    from ferlab.engine.tasks import DistillationTask
    from ferlab.runtime.files import load_model
    from ferlab.runtime.predict import predict_probs

    splits = _random_splits()
    Trainer(_cfg(tmp_path, name="teacher", epochs=1), splits, L.SEVEN).fit()
    teacher_file = tmp_path / "teacher" / "model.safetensors"
    teacher = load_model(teacher_file)[0].eval()
    cfg = _cfg(
        tmp_path, name="student", model="fernet_xs", teacher=str(teacher_file), kd_alpha=0.7, kd_cache=True
    )
    capsys.readouterr()
    tr = Trainer(cfg, splits, L.SEVEN)
    assert tr.task.teacher is None  # no teacher pass per batch
    assert "kd_cache: the teacher labels" in capsys.readouterr().out
    # known answer: the teacher's flip-averaged log-probabilities on the un-augmented training images, in the
    # run's precision (bf16 on a CPU with fast bf16)
    probs = predict_probs(teacher, splits["train"].images, tr.eval_tf, tta="flip", precision=tr.precision)
    assert tr.teacher_logits.shape == (len(splits["train"]), 7)
    np.testing.assert_allclose(tr.teacher_logits.exp().numpy(), probs, atol=1e-5)
    s = tr.fit()
    assert "train_kd" in tr.history[-1] and s["kd_cache_s"] > 0
    # a resume reads the cache back instead of running the teacher again
    tr2 = Trainer(_cfg(tmp_path, name="student", model="fernet_xs", teacher=str(teacher_file), kd_alpha=0.7,
                       kd_cache=True, epochs=2), splits, L.SEVEN)  # fmt: skip
    assert "kd_cache" not in capsys.readouterr().out
    assert torch.equal(tr2.teacher_logits, tr.teacher_logits) and tr2.kd_cache_time == s["kd_cache_s"]
    # every training batch gets the cached predictions of its own images (indices of the epoch's draw)
    got, orig_batches, orig_forward = [], tr2.batches, tr2.task.forward

    def batches(epoch):
        for x, y, soft, i in orig_batches(epoch):
            got.append([i])
            yield x, y, soft, i

    def forward(x, y, soft=None, teacher_logits=None):
        got[-1].append(teacher_logits)
        return orig_forward(x, y, soft, teacher_logits=teacher_logits)

    tr2.batches, tr2.task.forward = batches, forward
    tr2.fit()
    assert len(got) == tr2.steps_per_epoch and all(torch.equal(t, tr2.teacher_logits[i]) for i, t in got)
    assert any(not np.array_equal(i, np.arange(b * 16, (b + 1) * 16)) for b, (i, _) in enumerate(got))
    # cached logits give the loss an online teacher gives on the same batch
    x, y = torch.randn(4, 1, 48, 48), torch.tensor([0, 1, 2, 3])
    crit = torch.nn.CrossEntropyLoss()
    online = DistillationTask(tr.model.eval(), crit, teacher, 0.7, 4.0)(x, y)
    with torch.no_grad():
        t = torch.log_softmax(teacher(x), -1) + 3.0  # any per-row shift of the logits: the same targets
    cached = DistillationTask(tr.model.eval(), crit, None, 0.7, 4.0)(x, y, teacher_logits=t)
    torch.testing.assert_close(cached["loss"], online["loss"])
    with pytest.raises(ValueError, match="needs teacher_logits"):
        DistillationTask(tr.model, crit, None)(x, y)
    with pytest.raises(ConfigError, match="kd_cache caches a teacher"):
        _cfg(tmp_path, kd_cache=True)


def test_tensorboard_and_curves_are_written(tmp_path):
    Trainer(_cfg(tmp_path, epochs=2, tensorboard=True), _random_splits(), L.SEVEN).fit()
    run = tmp_path / "run"
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "curves.png").stat().st_size > 10_000
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    for col in ("train_loss", "val_acc", "lr", "val_recall_disgust", "val_f1_happy", "val_precision_neutral"):
        assert col in header
    for f in ("test.json", "test.md", "test_confusion.png", "test_confusion.csv"):
        assert (run / "eval" / f).is_file()


def test_torch_compile_switch(tmp_path):
    # aot_eager traces forward and backward like inductor but skips its C++ code generation (40 s here)
    cfg = _cfg(tmp_path, compile=True, compile_backend="aot_eager", fast_dev_run=True)
    tr = Trainer(cfg, _random_splits(n=16), L.SEVEN)
    assert type(tr.task.model).__name__ == "OptimizedModule"
    assert tr.fit()["epochs_run"] == 1


def test_cross_dataset_evaluation_maps_labels(fer2013):
    """An 8-class (FER+-style) model evaluated on 7-class FER2013: labels map through the vocabulary."""
    from ferlab.engine import evaluate_model

    model = ferlab.create_model("smallcnn_tiny", num_classes=8).eval()
    sp = fer2013["test"].subset(np.arange(64))
    m = evaluate_model(model, sp, classes=L.EIGHT)
    assert m["classes"] == list(L.EIGHT) and m["n"] == 64
    assert m["per_class"]["contempt"]["support"] == 0
    # a 7-class model on an 8-class split: contempt images have no counterpart and are left out, explicitly
    sp8 = ferlab.Split("test", sp.images[:8], np.array([7, 7, 0, 1, 2, 3, 4, 5]), L.EIGHT)
    m7 = evaluate_model(ferlab.create_model("smallcnn_tiny").eval(), sp8, classes=L.SEVEN)
    assert m7["n"] == 6 and m7["left_out_unknown_classes"] == {"contempt": 2}


def test_cpu_budget_stops_after_the_epoch_that_crosses_it(tmp_path):
    """max_cpu_minutes counts this process's CPU time (not the wall clock that other jobs stretch), summed
    over resumes; the run stops after the epoch that crosses it and says so."""
    splits = _random_splits(n=48)
    s = Trainer(_cfg(tmp_path, epochs=5, max_cpu_minutes=1e-6), splits, L.SEVEN).fit()
    assert s["epochs_run"] == 1 and s["budget_reached"] and not s["stopped_early"]
    assert s["cpu_time_s"] > 0 and s["cpu_time_s"] <= 2 * s["threads"] * s["train_time_s"] + 1
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["cpu_time"] == pytest.approx(s["cpu_time_s"])
    # a larger budget resumes from the checkpoint with the CPU time already spent
    more = Trainer(_cfg(tmp_path, epochs=2, max_cpu_minutes=10.0), splits, L.SEVEN)
    assert more.cpu_time == pytest.approx(s["cpu_time_s"]) and more.fit()["epochs_run"] == 2
