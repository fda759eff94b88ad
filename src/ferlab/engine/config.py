"""Typed training configuration: defaults, then a YAML recipe, then ``key=value`` overrides.

``load_config("configs/smallcnn/fer2013.yaml", ["epochs=3", "augment.hflip=0.0"])`` returns a validated
:class:`TrainConfig`. Unknown keys, wrong types and impossible combinations raise a
:class:`~ferlab.errors.ConfigError` that lists the valid options. The resolved config is saved in the run
folder as ``config.yaml`` and inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from ..errors import ConfigError
from ..runtime.precision import PRECISIONS

OPTIMIZERS = ("sgd", "adam", "adamw", "radam", "adabelief", "lookahead_sgd", "lookahead_adam", "lookahead_adamw",
              "lookahead_radam", "ranger_adabelief")  # fmt: skip
SCHEDULERS = ("none", "step", "plateau", "cosine", "cosine_restarts", "cyclic", "onecycle")
LOSSES = ("ce", "soft_ce", "center", "island")
CLASS_WEIGHTS = ("none", "inverse", "effective")
SAMPLERS = ("shuffle", "weighted")
MONITORS = ("val_loss", "val_acc")


@dataclass
class TrainConfig:
    """Every option of a training run (see ``configs/`` for the papers' recipes)."""

    # what to train
    model: str = "smallcnn"
    model_kwargs: dict = field(default_factory=dict)
    pretrained: str | None = None
    img_size: int | None = None
    in_chans: int | None = None
    # data
    dataset: str = "fer2013"
    data_dir: str | None = None
    dataset_kwargs: dict = field(default_factory=dict)
    train_split: str = "train"
    val_split: str | None = "val"  # None: carve val_fraction out of train (stratified)
    val_fraction: float = 0.1
    test_splits: list = field(default_factory=lambda: ["test"])
    expansion: str = "none"  # offline expansion of the training split (none|paper002|paper002_hflip|paper004)
    sampler: str = "shuffle"
    synthetic_weight: float = 1.0  # draw weight of synthetic (generated) training images: 0 drops them
    augment: dict = field(default_factory=dict)  # AugmentConfig fields
    # optimisation
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    scheduler: str = "onecycle"
    scheduler_kwargs: dict = field(default_factory=dict)
    warmup_epochs: int = 0
    grad_clip: float | None = None
    # loss
    loss: str = "ce"
    label_smoothing: float = 0.0
    class_weights: str = "none"
    island_lambda: float = 0.005  # L = L_softmax + lambda * L_island  (Chen & Chen 2024)
    island_lambda1: float = 7.0  # L_island = L_center + lambda1 * sum(cos + 1)
    center_lr: float = 0.5  # centres are learned with their own SGD optimiser
    attn_reg_weight: float = 0.0  # weight of a model's 'attn_reg' output (EmoNeXt)
    teacher: str | None = None  # knowledge distillation: a .safetensors export or checkpoint of the teacher
    kd_alpha: float = 0.5  # weight of the distillation term
    kd_temperature: float = 4.0
    # distil from the teacher's flip-averaged predictions on the un-augmented training images, computed once
    # (<run_dir>/teacher_logits.npz, kept for resumes) instead of one teacher pass per augmented batch
    kd_cache: bool = False
    # engine switches
    precision: str = "auto"  # auto: bf16 on CPUs with fast bf16, fp16 on CUDA, else fp32 (ferlab.runtime)
    ema: bool = False
    ema_decay: float = 0.999
    ema_warmup: bool = False  # timm's EMA warmup: decay 1 - (1 + step)^(-2/3), capped at ema_decay
    channels_last: bool = False
    compile: bool = False
    compile_backend: str = "inductor"  # torch.compile backend ("aot_eager" compiles without C++ codegen)
    device: str = "cpu"
    threads: int | None = None  # torch/OpenCV threads; None: the cores this process may use
    # run control
    seed: int = 0
    deterministic: bool = False
    early_stopping: int | None = None  # patience in epochs (Wang 2024 (AEMT): 10)
    # training-time budget (wall minutes, summed over resumes); None: none. The epoch that uses it up stops at
    # that step (single process; DDP stops between epochs), is validated and checkpointed; no epoch follows.
    # That epoch counts as done: resumed with a larger budget, a run goes on with the next epoch (the cut
    # one's metrics.csv row says how many images it saw, train_images).
    max_minutes: float | None = None
    # the same in CPU minutes of this process (all its threads): a budget other jobs cannot eat into
    max_cpu_minutes: float | None = None
    monitor: str = "val_acc"
    snapshot_epochs: list = field(default_factory=list)  # extra checkpoints for snapshot ensembles
    ablation: dict = field(
        default_factory=dict
    )  # named ablation tables: {table: {row: {key: value, paper: {...}}}}
    fast_dev_run: bool = False
    limit_train_batches: int | None = None
    limit_val_batches: int | None = None
    overfit_batches: int | None = None
    eval_batch_size: int = 256
    output_dir: str = "runs"
    name: str | None = None
    resume: bool = True
    resume_changed_ok: bool = (
        False  # resume even if settings that shape the weights changed (see resume_changes)
    )
    progress: bool = True
    tensorboard: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def run_name(self) -> str:
        return self.name or f"{self.model}-{self.dataset}"

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.run_name


def _type_ok(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, tp)


def _coerce(value, tp):
    args = typing.get_args(tp) or (tp,)
    if isinstance(value, int) and not isinstance(value, bool) and float in args and int not in args:
        return float(value)
    return value


def _set(d: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
        if not isinstance(d, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
    d[keys[-1]] = value


def parse_overrides(overrides) -> dict:
    """``["epochs=3", "augment.hflip=0"]`` -> nested dict (values parsed as YAML scalars)."""
    out: dict = {}
    for o in overrides or []:
        if "=" not in o:
            raise ConfigError(f"override {o!r} is not key=value")
        k, v = o.split("=", 1)
        _set(out, k.strip(), yaml.safe_load(v) if v.strip() else None)
    return out


def _legacy(d: dict) -> dict:
    """Older recipes' keys: ``amp: true|false`` became ``precision: auto|fp32``."""
    if "amp" in d:
        d = dict(d)
        amp = d.pop("amp")
        if "precision" not in d:
            d["precision"] = "auto" if amp else "fp32"
    return d


def from_dict(d: dict) -> TrainConfig:
    """Validate a dict against :class:`TrainConfig` (types, names, combinations)."""
    d = _legacy(d)
    hints = typing.get_type_hints(TrainConfig)
    valid = {f.name for f in fields(TrainConfig)}
    bad = sorted(set(d) - valid)
    if bad:
        raise ConfigError(f"unknown config key(s) {', '.join(bad)}; valid: {', '.join(sorted(valid))}")
    kw = {}
    for k, v in d.items():
        v = _coerce(v, hints[k])
        if not _type_ok(v, hints[k]):
            raise ConfigError(f"config key {k!r}: {v!r} is a {type(v).__name__}, expected {hints[k]}")
        kw[k] = v
    cfg = TrainConfig(**kw)
    validate(cfg)
    return cfg


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None = None, overrides=None) -> TrainConfig:
    """Defaults <- YAML recipe at ``path`` <- ``overrides`` (list of ``key=value``)."""
    d: dict = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        try:
            d = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{p}: top level must be a mapping of config keys")
    return from_dict(merge(d, parse_overrides(overrides)))


def _choice(name, value, valid) -> None:
    if value not in valid:
        raise ConfigError(f"config key {name!r}: {value!r} is not valid; valid: {', '.join(valid)}")


def validate(cfg: TrainConfig) -> None:
    """Value and combination checks that need more than types."""
    from ..transforms import AugmentConfig

    _choice("optimizer", cfg.optimizer, OPTIMIZERS)
    _choice("scheduler", cfg.scheduler, SCHEDULERS)
    _choice("loss", cfg.loss, LOSSES)
    _choice("class_weights", cfg.class_weights, CLASS_WEIGHTS)
    _choice("sampler", cfg.sampler, SAMPLERS)
    _choice("monitor", cfg.monitor, MONITORS)
    _choice("precision", cfg.precision, PRECISIONS)
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"config key 'threads' must be >= 1, got {cfg.threads}")
    for k in ("max_minutes", "max_cpu_minutes"):
        if getattr(cfg, k) is not None and getattr(cfg, k) <= 0:
            raise ConfigError(f"config key {k!r} must be > 0, got {getattr(cfg, k)}")
    _choice("expansion", cfg.expansion, ("none", "paper002", "paper002_hflip", "paper004"))
    for k in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(cfg, k) < 1:
            raise ConfigError(f"config key {k!r} must be >= 1, got {getattr(cfg, k)}")
    if cfg.synthetic_weight < 0:
        raise ConfigError(f"config key 'synthetic_weight' must be >= 0, got {cfg.synthetic_weight}")
    if cfg.lr <= 0:
        raise ConfigError(f"config key 'lr' must be > 0, got {cfg.lr}")
    if not 0 <= cfg.label_smoothing < 1:
        raise ConfigError(f"config key 'label_smoothing' must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.val_split is None and not 0 < cfg.val_fraction < 1:
        raise ConfigError("val_split is null, so val_fraction must be in (0, 1)")
    AugmentConfig.from_dict(cfg.augment)
    for t, rows in cfg.ablation.items():
        if not isinstance(rows, dict) or not all(
            isinstance(r, dict) for k, r in rows.items() if not k.startswith("_")
        ):
            raise ConfigError(f"ablation table {t!r} must map row names to mappings of settings")
    if cfg.loss == "soft_ce" and cfg.label_smoothing:
        raise ConfigError("loss 'soft_ce' trains on soft labels; label_smoothing must be 0 with it")
    if cfg.loss in ("center", "island") and cfg.sampler == "weighted" and cfg.class_weights != "none":
        raise ConfigError("use either sampler 'weighted' or class_weights, not both")
    if cfg.sampler == "weighted" and cfg.class_weights != "none":
        raise ConfigError("sampler 'weighted' already balances classes; set class_weights to 'none'")
    if cfg.teacher and cfg.loss != "ce":
        raise ConfigError(f"distillation (teacher) combines with loss 'ce' only, not {cfg.loss!r}")
    if cfg.kd_cache and not cfg.teacher:
        raise ConfigError("kd_cache caches a teacher's predictions; set teacher too")
    if not 0 <= cfg.kd_alpha <= 1:
        raise ConfigError(f"kd_alpha must be in [0, 1], got {cfg.kd_alpha}")
    if cfg.in_chans is not None and cfg.in_chans not in (1, 3, 4):
        raise ConfigError(f"in_chans={cfg.in_chans}: valid: 1 (grayscale), 3 (RGB), 4 (RGB + LBP)")
    if cfg.device not in ("cpu", "cuda", "mps") and not cfg.device.startswith("cuda:"):
        raise ConfigError(f"device {cfg.device!r}; valid: cpu, cuda, cuda:N, mps")


#: keys that may change between a run and its resumption: how long, how fast, where and how verbosely it
#: runs, and what it reports at the end; every other key shapes the weights
RESUME_FREE = frozenset({
    "epochs", "max_minutes", "max_cpu_minutes", "early_stopping", "progress", "tensorboard", "threads", "resume", "resume_changed_ok",
    "eval_batch_size", "output_dir", "data_dir", "device", "test_splits", "snapshot_epochs", "limit_val_batches",
    "compile", "compile_backend", "name", "ablation",
})  # fmt: skip


def resume_changes(old: TrainConfig, new: TrainConfig) -> dict:
    """``{key: (old, new)}`` for the settings that differ between a run's checkpoint and a new config."""
    a, b = old.to_dict(), new.to_dict()
    return {k: (a[k], b[k]) for k in b if k not in RESUME_FREE and a.get(k) != b[k]}


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    from ..io import write_atomic

    write_atomic(yaml.safe_dump(cfg.to_dict(), sort_keys=False), path)


def config_from_checkpoint(d: dict) -> TrainConfig:
    d = _legacy(d)
    valid = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in d.items() if k in valid})
