"""The one Trainer: every model, every recipe, one readable loop.

    cfg = load_config("configs/smallcnn/fer2013.yaml", ["epochs=3"])
    summary = Trainer(cfg).fit()

Per epoch: shuffle (or class-balanced sampling) with a generator seeded by (seed, epoch), so a resumed run
sees exactly the batches it would have seen; batches of uint8 crops are gathered from memory and
augmented on the batch tensor by the shared transform; the task returns the loss; the optimiser steps
(with optional bf16 autocast, gradient clipping, EMA); the scheduler steps per batch or per epoch.
After each epoch: validation metrics (accuracy, macro-F1, per-class precision/recall/F1), one CSV row,
TensorBoard scalars, ``last.pt`` (atomic), ``best.pt`` when the monitored metric improves, snapshot
checkpoints at the configured epochs, early stopping. A non-finite loss stops the run naming the epoch
and step; the last good checkpoint stays. At the end: test-split reports with the best weights, the
training curves PNG and ``model.safetensors`` (best weights, self-describing).

Data-parallel training: launched under ``torchrun``, each rank trains on a disjoint slice of every
epoch's permutation through ``DistributedDataParallel``; only rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..errors import ConfigError, DataError, FerlabError
from ..hardware import configure_threads, cpu_info, default_threads
from ..io import atomic_path, write_atomic
from ..runtime.evaluate import write_report
from ..runtime.files import FORMAT, atomic_save, export_weights, load_checkpoint
from ..runtime.metrics import classification_metrics
from ..runtime.precision import autocast_context, resolve_precision
from ..runtime.predict import predict_probs
from .config import TrainConfig, save_config


class TrainingDiverged(FerlabError):
    """The loss became NaN or infinite."""


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) for a reproducible run."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def load_training_data(
    cfg: TrainConfig, data_config, report=None, info: dict | None = None
) -> tuple[dict, tuple]:
    """Train / val / test splits in memory, in the model's colour and size when read from files.

    Rows and files the readers skipped (malformed CSV rows, unreadable images) are added to ``report``
    (a :class:`ferlab.io.SkipReport`) when one is given; the dataset's ``info`` (e.g. ``crop``, the face-crop
    rule of prepared images) is copied into ``info`` when one is given."""
    from ..data import load_dataset
    from ..data.base import stack_splits
    from ..data.splits import stratified_split
    from ..data.synthetic import mark_synthetic, real_only, split_synthetic
    from ..transforms.expand import expand

    ds = mark_synthetic(load_dataset(cfg.dataset, cfg.data_dir, **cfg.dataset_kwargs))
    gray = data_config.color == "gray"
    side = data_config.input_size[1]
    if report is not None:
        report.merge(ds.info.get("skipped"))
    if info is not None:
        info.update({k: v for k, v in ds.info.items() if k != "skipped"})

    def mem(sp):
        return sp if sp.in_memory else sp.load(size=side, grayscale=gray, report=report)

    train, synthetic = split_synthetic(mem(ds.split(cfg.train_split)))  # synthetic: None for real-only data
    if cfg.val_split:
        val = real_only(mem(ds.split(cfg.val_split)))  # evaluation splits hold real faces only
    else:
        train, val = stratified_split(train, cfg.val_fraction, seed=cfg.seed)
    if synthetic is not None:
        train = stack_splits([train, synthetic], "train")
    train.name = "train"
    train = expand(train, cfg.expansion, seed=cfg.seed)
    tests = {t: real_only(mem(ds.split(t))) for t in cfg.test_splits}
    return {"train": train, "val": val, **{f"test:{k}": v for k, v in tests.items()}}, ds.classes


class Trainer:
    """The one training loop: builds everything from a :class:`TrainConfig` and runs :meth:`fit`.

    Args:
        cfg: the recipe (``load_config`` reads YAML recipes with ``key=value`` overrides).
        splits: in-memory splits ``{'train', 'val', 'test:<name>'...}`` to train on instead of reading
            ``cfg.dataset`` (protocols pass folds this way); ``classes`` then names their labels.
        classes: the class names of ``splits``.
        data_info: the dataset's ``info`` when ``splits`` come from it (its crop rule goes into the model's spec).

    Example:
        >>> summary = Trainer(load_config("configs/fernet_s/fer2013.yaml", ["epochs=1"])).fit()
        >>> summary["test_acc"], summary["run_dir"]
    """

    def __init__(
        self,
        cfg: TrainConfig,
        splits: dict | None = None,
        classes: tuple | None = None,
        data_info: dict | None = None,
    ):
        self.cfg = cfg
        self.rank, self.world = _dist()
        self.is_main = self.rank == 0
        if cfg.fast_dev_run:
            cfg.epochs, cfg.limit_train_batches, cfg.limit_val_batches = 1, 1, 1
        # data-parallel ranks share the machine: each takes its share of the cores unless told otherwise
        self.threads = configure_threads(cfg.threads or max(1, default_threads() // self.world))
        seed_everything(cfg.seed, cfg.deterministic)
        self.device = torch.device(cfg.device)
        self.precision = resolve_precision(cfg.precision, cfg.device, quiet=not self.is_main)
        self.train_time = 0.0  # seconds of training so far, over resumes (the max_minutes budget)
        self.cpu_time = 0.0  # CPU seconds of this process spent training, over resumes (max_cpu_minutes)
        from ..io import SkipReport

        # rows/files the data readers skipped (reported once the run folder exists)
        self.skipped = SkipReport()
        # what the dataset says of itself (e.g. crop: the face-crop rule of its images); given with ``splits``
        self.data_info: dict = {k: v for k, v in (data_info or {}).items() if k != "skipped"}
        self._eval_bar = False  # a progress bar while the test splits are evaluated (finish)
        self._splits, self._classes = splits, classes
        self.run_dir = cfg.run_dir
        self.epoch = 0  # epochs completed
        self.step = 0
        self.best = -math.inf
        self.bad_epochs = 0
        self.history: list[dict] = []
        self._setup()

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        from ..data.balance import class_weights
        from ..data.synthetic import synthetic_mask
        from ..models import create_model, resolve_data_config
        from ..transforms import create_transform
        from .losses import CenterLoss, IslandLoss, classification_loss
        from .optim import build_optimizer, build_scheduler
        from .tasks import ClassificationTask, EmbeddingLossTask

        cfg = self.cfg
        if self._splits is None:
            # the data config depends only on the registry entry and img_size/in_chans overrides
            probe = resolve_data_config(cfg.model, cfg.in_chans, cfg.img_size)
            self._splits, self._classes = load_training_data(cfg, probe, self.skipped, self.data_info)
        self.splits, self.classes = self._splits, tuple(self._classes)
        self.train_split = self.splits["train"]
        self.synthetic_w = None  # per-item draw weights when synthetic images are weighted (not 1)
        syn = synthetic_mask(self.train_split)
        if syn is not None and cfg.synthetic_weight == 0:
            self.train_split = self.splits["train"] = self.train_split.subset(~syn)
        elif syn is not None and cfg.synthetic_weight != 1:
            self.synthetic_w = np.where(syn, cfg.synthetic_weight, 1.0)
        if len(self.train_split) == 0:
            raise DataError("the training split is empty")
        # every evaluation split is checked now, not after hours of training
        for key, sp in self.splits.items():
            if key != "train" and len(sp) == 0:
                name = "validation" if key == "val" else f"test split {key[5:]!r}"
                raise DataError(f"the {name} of {cfg.dataset!r} is empty; nothing could be evaluated on it")
        torch.manual_seed(cfg.seed)
        self.model = create_model(
            cfg.model, num_classes=len(self.classes), in_chans=cfg.in_chans, img_size=cfg.img_size,
            pretrained=cfg.pretrained, classes=self.classes, crop=self.data_info.get("crop"), **cfg.model_kwargs,
        )  # fmt: skip
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.train_tf = create_transform(self.model.data_config, is_training=True, augment=cfg.augment)
        self.eval_tf = create_transform(self.model.data_config, is_training=False)
        if cfg.overfit_batches:
            from ..transforms import AugmentConfig

            self.train_tf = create_transform(
                self.model.data_config, is_training=True, augment=AugmentConfig.none()
            )

        soft = cfg.loss == "soft_ce"
        if soft and self.train_split.soft_labels is None:
            raise ConfigError(
                f"loss 'soft_ce' needs soft labels; dataset {cfg.dataset!r} has none (use ferplus with mode: probability)"
            )
        weight = None
        if cfg.class_weights != "none":
            weight = torch.as_tensor(
                class_weights(self.train_split.labels, len(self.classes), cfg.class_weights)
            )
        criterion = classification_loss(cfg.label_smoothing, weight, soft)
        self.aux_loss, self.aux_opt = None, None
        self._kd_teacher, self.teacher_logits, self.kd_cache_time = None, None, 0.0
        if cfg.loss in ("center", "island"):
            cls = IslandLoss if cfg.loss == "island" else CenterLoss
            kw = {"lambda1": cfg.island_lambda1} if cfg.loss == "island" else {}
            self.aux_loss = cls(len(self.classes), self.model.num_features, **kw).to(self.device)
            self.aux_opt = torch.optim.SGD(self.aux_loss.parameters(), lr=cfg.center_lr)
            self.task = EmbeddingLossTask(
                self.model, criterion, self.aux_loss, cfg.island_lambda, soft, cfg.attn_reg_weight
            )
        elif cfg.teacher:
            from ..runtime.files import load_model
            from .tasks import DistillationTask

            teacher, t_classes, _ = load_model(cfg.teacher)
            if tuple(t_classes) != self.classes:
                raise ConfigError(
                    f"teacher {cfg.teacher} predicts {t_classes}, the dataset has {self.classes}"
                )
            if teacher.data_config != self.model.data_config:
                raise ConfigError(
                    f"teacher input {teacher.data_config} differs from the student's {self.model.data_config}"
                )
            teacher = teacher.to(self.device)
            if cfg.channels_last:
                teacher = teacher.to(memory_format=torch.channels_last)
            # kd_cache: the teacher labels the training images once (end of setup), then leaves memory
            self._kd_teacher = teacher if cfg.kd_cache else None
            self.task = DistillationTask(
                self.model,
                criterion,
                None if cfg.kd_cache else teacher,
                cfg.kd_alpha,
                cfg.kd_temperature,
                soft,
            )
        else:
            self.task = ClassificationTask(self.model, criterion, soft, cfg.attn_reg_weight)

        if cfg.compile:
            self.task.model = torch.compile(self.model, backend=cfg.compile_backend)
        self.ddp_model = self.model
        if self.world > 1:
            if cfg.loss in ("center", "island") or cfg.attn_reg_weight:
                raise ConfigError(
                    "data-parallel training supports plain classification losses only "
                    f"(loss {cfg.loss!r}, attn_reg_weight {cfg.attn_reg_weight}); train this recipe in one process"
                )
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(self.model)
            self.task.model = self.ddp_model

        self.steps_per_epoch = self._num_batches()
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler, self.sched_per_batch = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        # fp16 autocast on CUDA needs loss scaling; bf16 (the CPU path) does not
        self.scaler = (
            torch.amp.GradScaler("cuda") if self.precision == "fp16" and self.device.type == "cuda" else None
        )
        self.ema = None
        if cfg.ema:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=cfg.ema_decay, use_warmup=cfg.ema_warmup)
        self.tb = None
        if cfg.resume and (self.run_dir / "last.pt").is_file():
            self.resume(self.run_dir / "last.pt")  # refuses another model or changed settings: checked first
        # config.yaml describes the weights in the folder: written only once resuming is settled
        if self.is_main:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                save_config(cfg, self.run_dir / "config.yaml")
            except OSError as e:
                raise ConfigError(f"cannot write the run folder {self.run_dir}: {e.strerror or e}") from None
            self.skipped.announce(f"{cfg.dataset} data", self.run_dir / "skipped.txt")
        if self._kd_teacher is not None:
            self.teacher_logits = self._cached_teacher_logits(self._kd_teacher)
            self._kd_teacher = None

    def _cached_teacher_logits(self, teacher) -> torch.Tensor:
        """``kd_cache``: the teacher's log-probabilities ``[N, C]`` on the un-augmented training images,
        averaged with their mirror images, computed once into ``<run_dir>/teacher_logits.npz`` and read
        back (on resume) when that file was made by the same teacher on the same training images. One
        teacher pass per image instead of one per augmented batch: the teacher does not see the student's
        augmentations (offline distillation); the time it takes is in the summary (``kd_cache_s``)."""
        import hashlib

        cfg, sp = self.cfg, self.train_split
        path = self.run_dir / "teacher_logits.npz"
        src = Path(cfg.teacher)
        who = hashlib.sha256(src.read_bytes()).hexdigest()[:16] if src.is_file() else str(cfg.teacher)
        data = hashlib.sha256(
            sp.labels.tobytes() + sp.images[:: max(1, len(sp) // 64)].tobytes()
        ).hexdigest()[:16]
        key = f"{who}:{data}:{len(sp)}:{self.model.data_config}"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    if str(z["key"]) == key and z["logits"].shape == (len(sp), len(self.classes)):
                        self.kd_cache_time = float(z["cpu_s"])
                        return torch.from_numpy(z["logits"])
            except (OSError, ValueError, KeyError):
                pass  # unreadable or of another teacher: made again below
        t0 = time.process_time()
        if self.is_main:
            print(f"kd_cache: the teacher labels {len(sp)} training images once ({path})", flush=True)
        probs = predict_probs(
            teacher, sp.images, self.eval_tf, tta="flip", device=str(self.device),
            progress=cfg.progress and self.is_main, precision=self.precision,
        )  # fmt: skip
        logits = np.log(np.clip(probs, 1e-8, None)).astype(np.float32)
        self.kd_cache_time = time.process_time() - t0
        if self.is_main:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, logits=logits, key=np.array(key), cpu_s=np.array(self.kd_cache_time))
        return torch.from_numpy(logits)

    def _num_batches(self) -> int:
        n = len(self.train_split) // self.world
        nb = max(1, n // self.cfg.batch_size)  # drop_last keeps BatchNorm happy
        if self.cfg.overfit_batches:
            nb = min(nb, self.cfg.overfit_batches)
        if self.cfg.limit_train_batches:
            nb = min(nb, self.cfg.limit_train_batches)
        return nb

    # ------------------------------------------------------------------ data
    def epoch_indices(self, epoch: int) -> np.ndarray:
        """The training indices of one epoch for this rank (deterministic in seed and epoch)."""
        cfg = self.cfg
        labels = self.train_split.labels
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        n = len(labels)
        if cfg.overfit_batches:
            idx = np.arange(min(n, cfg.overfit_batches * cfg.batch_size))
            idx = np.resize(idx, self.steps_per_epoch * cfg.batch_size * self.world)
        elif self.synthetic_w is not None or cfg.sampler == "weighted":
            # class-balanced draws, synthetic images drawn synthetic_weight times as often as real ones
            from ..data.balance import draw_indices

            idx = draw_indices(labels, n, g, cfg.sampler == "weighted", self.synthetic_w, len(self.classes))
        else:
            idx = torch.randperm(n, generator=g).numpy()
        idx = idx[self.rank :: self.world]
        return idx[: self.steps_per_epoch * cfg.batch_size]

    def batches(self, epoch: int):
        """Yield ``(images, labels, soft labels or None, indices)`` training batches of one epoch: the epoch's draw (:meth:`epoch_indices`)
        through the training transform, with augmentation seeded by (seed, epoch, rank)."""
        sp = self.train_split
        g = torch.Generator().manual_seed(cfg_seed_aug(self.cfg.seed, epoch, self.rank))
        idx = self.epoch_indices(epoch)
        bs = self.cfg.batch_size
        for b in range(self.steps_per_epoch):
            i = (
                np.sort(idx[b * bs : (b + 1) * bs])
                if self.cfg.overfit_batches
                else idx[b * bs : (b + 1) * bs]
            )
            x = self.train_tf(sp.images[i], generator=g)
            y = torch.from_numpy(sp.labels[i])
            soft = torch.from_numpy(sp.soft_labels[i]) if sp.soft_labels is not None else None
            yield x, y, soft, i

    # ------------------------------------------------------------------ loop
    def _autocast(self):
        return autocast_context(self.precision, self.device.type)

    def train_epoch(self, epoch: int, budget_left: tuple[float, float] | None = None) -> dict:
        """One epoch of optimisation (precision policy, gradient clipping, EMA, auxiliary losses); returns the
        epoch's mean training loss, accuracy, images/s and time.

        ``budget_left`` = (wall seconds, CPU seconds) left of ``max_minutes`` / ``max_cpu_minutes``: the epoch
        stops after the step that uses it up (``cut_short`` in the result), so a budget is kept to within one
        step instead of one (possibly 40-minute) epoch."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.task.train()
        tot_loss, tot_correct, tot_n = 0.0, 0, 0
        parts_sum: dict = {}
        t0, c0 = time.perf_counter(), time.process_time()
        cut_short = False
        bar = tqdm(self.batches(epoch), total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not (cfg.progress and self.is_main), leave=False, dynamic_ncols=True)  # fmt: skip
        for b, (x, y, soft, i) in enumerate(bar):
            x, y = x.to(self.device), y.to(self.device)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            soft = soft.to(self.device) if soft is not None else None
            kw = (
                {}
                if self.teacher_logits is None
                else {"teacher_logits": self.teacher_logits[i].to(self.device)}
            )
            with self._autocast():
                out = self.task(x, y, soft, **kw)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, step {b + 1}; the last good checkpoint "
                    f"is {self.run_dir / 'last.pt'}"
                )
            self.optimizer.zero_grad(set_to_none=True)
            if self.aux_opt is not None:
                self.aux_opt.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            if self.aux_opt is not None:
                # centre updates are not scaled by lambda (Wen et al.): undo the loss weight on their gradient
                for p in self.aux_loss.parameters():
                    if p.grad is not None:
                        p.grad /= max(cfg.island_lambda, 1e-12)
                self.aux_opt.step()
            if self.ema is not None:
                self.ema.update(self.model, step=self.step)
            if self.scheduler is not None and self.sched_per_batch:
                self.scheduler.step()
            self.step += 1
            n = len(y)
            tot_loss += loss.item() * n
            tot_correct += (out["logits"].argmax(1) == y).sum().item()
            tot_n += n
            for k, v in out["parts"].items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v.item() * n
            el = time.perf_counter() - t0
            bar.set_postfix(
                loss=f"{tot_loss / tot_n:.4f}",
                acc=f"{tot_correct / tot_n:.3f}",
                img_s=f"{tot_n * self.world / el:.0f}",
            )
            if budget_left is not None and (
                el >= budget_left[0] or time.process_time() - c0 >= budget_left[1]
            ):
                cut_short = b + 1 < self.steps_per_epoch
                break
        bar.close()
        stats = torch.tensor([tot_loss, tot_correct, tot_n], dtype=torch.float64)
        if self.world > 1:
            dist.all_reduce(stats)
        el = time.perf_counter() - t0
        res = {"train_loss": stats[0].item() / stats[2].item(), "train_acc": stats[1].item() / stats[2].item(),
               "img_per_s": stats[2].item() / el, "epoch_time": el, "train_images": int(stats[2].item()),
               "cut_short": cut_short}  # fmt: skip
        res.update({f"train_{k}": v / tot_n for k, v in parts_sum.items()})
        return res

    def eval_model(self):
        """The model that is evaluated and exported: the EMA copy when ``ema`` is on, else the trained one."""
        return self.ema.module if self.ema is not None else self.model

    def validate(self, split, limit_batches: int | None = None) -> dict:
        """Loss and metrics of :meth:`eval_model` on an in-memory split (the one prediction loop, no TTA)."""
        import torch.nn.functional as F

        model = self.eval_model()
        bs = self.cfg.eval_batch_size
        images, labels = split.images, split.labels
        if limit_batches:
            images, labels = images[: limit_batches * bs], labels[: limit_batches * bs]
        if self.cfg.overfit_batches:
            n = min(len(self.train_split), self.cfg.overfit_batches * self.cfg.batch_size)
            images, labels = self.train_split.images[:n], self.train_split.labels[:n]
        probs = predict_probs(model, images, self.eval_tf, bs, device=self.device, progress=self._eval_bar)
        m = classification_metrics(labels, probs, self.classes)
        m["loss"] = float(
            F.nll_loss(torch.log(torch.as_tensor(probs).clamp_min(1e-12)), torch.as_tensor(labels)).item()
        )
        model.train()
        return m

    def fit(self) -> dict:
        """Train until the epochs, the early-stopping patience or a time budget run out, checkpointing every
        epoch (``last.pt``, ``best.pt``, snapshots); then :meth:`finish`. Returns the run's summary (also
        written as ``summary.json``). A run folder with a ``last.pt`` resumes where it stopped."""
        cfg = self.cfg
        writer = self._tensorboard()
        t_start = time.perf_counter()
        stopped_early = budget_reached = False
        if self.is_main:
            print(
                f"{self.run_dir}: {cfg.model}, precision {self.precision}, {self.threads} thread(s)",
                flush=True,
            )
        for epoch in range(self.epoch, cfg.epochs):
            spent = self._budget_spent()
            if self.world > 1:  # every rank stops together (each measures its own time): else a DDP hang
                flag = torch.tensor([1.0 if spent else 0.0], device=self.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                spent = spent or ("the time budget of another process" if flag.item() else None)
            if spent:
                budget_reached = True
                if self.is_main:
                    print(f"{spent} reached after {self.epoch} epochs", flush=True)
                break
            t_epoch, c_epoch = time.perf_counter(), time.process_time()
            tr = self.train_epoch(epoch, self._budget_left())
            budget_reached = budget_reached or tr["cut_short"]
            val = self.validate(self.splits["val"], cfg.limit_val_batches)
            lr = self.optimizer.param_groups[0]["lr"]
            if self.scheduler is not None and not self.sched_per_batch:
                if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    on_acc = cfg.scheduler_kwargs.get("monitor", "val_loss") == "val_acc"
                    self.scheduler.step(val["accuracy"] if on_acc else val["loss"])
                else:
                    self.scheduler.step()
            self.epoch = epoch + 1
            self.train_time += time.perf_counter() - t_epoch
            self.cpu_time += time.process_time() - c_epoch
            row = {"epoch": self.epoch, "lr": lr, **tr, "train_time_total": self.train_time,
                   "cpu_time_total": self.cpu_time, "val_loss": val["loss"], "val_acc": val["accuracy"],
                   "val_macro_f1": val["macro_f1"]}  # fmt: skip
            for c, d in val["per_class"].items():
                for k in ("precision", "recall", "f1"):
                    row[f"val_{k}_{c}"] = d[k]
            self.history.append(row)
            score = val["accuracy"] if cfg.monitor == "val_acc" else -val["loss"]
            improved = score > self.best
            if improved:
                self.best, self.bad_epochs = score, 0
            else:
                self.bad_epochs += 1
            if self.is_main:
                self._log(row, writer)
            if self.is_main and not cfg.fast_dev_run:  # a smoke run writes no checkpoints (as in Lightning)
                self.save(self.run_dir / "last.pt", val)
                if improved:
                    self.save(self.run_dir / "best.pt", val)
                if self.epoch in cfg.snapshot_epochs:
                    self.save(self.run_dir / f"epoch_{self.epoch:03d}.pt", val)
            if self.is_main:
                print(
                    f"epoch {self.epoch}/{cfg.epochs}: train loss {tr['train_loss']:.4f} acc {tr['train_acc']:.4f} | "
                    f"val loss {val['loss']:.4f} acc {val['accuracy']:.4f} macro-F1 {val['macro_f1']:.4f} | "
                    f"{tr['img_per_s']:.0f} img/s, {tr['epoch_time']:.0f} s{' *' if improved else ''}"
                    f"{' (cut short by the budget after ' + str(tr['train_images']) + ' images)' if tr['cut_short'] else ''}",
                    flush=True,
                )
            if cfg.early_stopping and self.bad_epochs >= cfg.early_stopping:
                stopped_early = True
                if self.is_main:
                    print(
                        f"early stopping: no improvement of {cfg.monitor} for {self.bad_epochs} epochs",
                        flush=True,
                    )
                break
        if self._budget_spent() and self.epoch < cfg.epochs:
            budget_reached = budget_reached or not stopped_early
        summary = {"epochs_run": self.epoch, "best_" + cfg.monitor: self.best if cfg.monitor == "val_acc" else -self.best,
                   "stopped_early": stopped_early, "budget_reached": budget_reached,
                   "train_time_s": self.train_time, "cpu_time_s": self.cpu_time,
                   "session_time_s": time.perf_counter() - t_start,
                   "precision": self.precision, "threads": self.threads, "num_classes": len(self.classes),
                   "cpu": cpu_info().summary(), "run_dir": str(self.run_dir)}  # fmt: skip
        if self.kd_cache_time:
            summary["kd_cache_s"] = self.kd_cache_time  # CPU seconds of the teacher's one pass (kd_cache)
        if self.is_main:
            summary.update(self.finish())
            write_atomic(json.dumps(summary, indent=1), self.run_dir / "summary.json")
        if writer is not None:
            writer.close()
        return summary

    def _budget_left(self) -> tuple[float, float] | None:
        """(wall s, CPU s) left of the time budgets for a mid-epoch stop, or None: no budget, or several
        processes (DDP ranks would have to agree on the step to stop at; they stop between epochs)."""
        cfg = self.cfg
        if self.world > 1 or (cfg.max_minutes is None and cfg.max_cpu_minutes is None):
            return None
        inf = float("inf")
        wall = inf if cfg.max_minutes is None else 60 * cfg.max_minutes - self.train_time
        cpu = inf if cfg.max_cpu_minutes is None else 60 * cfg.max_cpu_minutes - self.cpu_time
        return wall, cpu

    def _budget_spent(self) -> str | None:
        """Which time budget is used up ("time budget of 60 min" / "CPU budget of 60 CPU-min"), or None."""
        cfg = self.cfg
        if cfg.max_minutes is not None and self.train_time >= 60 * cfg.max_minutes:
            return f"time budget of {cfg.max_minutes:g} min"
        if cfg.max_cpu_minutes is not None and self.cpu_time >= 60 * cfg.max_cpu_minutes:
            return f"CPU budget of {cfg.max_cpu_minutes:g} CPU-min"
        return None

    def finish(self) -> dict:
        """Reload the best weights, evaluate the test splits, write reports, curves and the safetensors export."""
        from ..plots import plot_curves

        out = {}
        if self.cfg.fast_dev_run:
            return out
        best, weights_epoch = self.run_dir / "best.pt", self.epoch
        if best.is_file():
            ck = load_checkpoint(best)
            self.model.load_state_dict(ck["model"])
            if self.ema is not None and ck.get("ema"):
                self.ema.module.load_state_dict(ck["ema"])
            weights_epoch = ck["epoch"]  # the exported weights are the best epoch's, not the last one's
        for key, sp in self.splits.items():
            if not key.startswith("test:"):
                continue
            name = key[5:]
            if self.cfg.progress and self.is_main:
                print(
                    f"evaluating the best weights (epoch {weights_epoch}) on {name} ({len(sp)} faces)",
                    flush=True,
                )
            # a progress bar for the (minutes-long) test evaluation
            self._eval_bar = self.cfg.progress and self.is_main
            try:
                m = self.validate(sp)
            finally:
                self._eval_bar = False
            write_report(
                m, self.run_dir / "eval", f"{name}", f"{self.cfg.run_name}: {self.cfg.dataset}/{name}"
            )
            out[f"{name}_acc"] = m["accuracy"]
            out[f"{name}_macro_f1"] = m["macro_f1"]
        if (self.run_dir / "metrics.csv").is_file():
            plot_curves(self.run_dir / "metrics.csv", self.run_dir / "curves.png")
        export_weights(self.eval_model(), self.run_dir / "model.safetensors", self.classes,
                       {"dataset": self.cfg.dataset, "epoch": weights_epoch, **{k: v for k, v in out.items()}})  # fmt: skip
        return out

    # ------------------------------------------------------------------ state
    def state(self, val: dict | None = None) -> dict:
        """Everything a resume needs, as plain containers (the model's spec, weights, optimiser, scheduler,
        EMA, RNG state, history, budgets), so the checkpoint loads with ``weights_only=True``."""
        sched = self.scheduler.state_dict() if self.scheduler is not None else None
        return {
            "format": FORMAT, "version": 1,
            **self.model.spec.replace(classes=self.classes).to_dict(),
            "config": self.cfg.to_dict(), "epoch": self.epoch, "step": self.step, "best_metric": self.best,
            "bad_epochs": self.bad_epochs, "train_time": self.train_time, "cpu_time": self.cpu_time,
            "precision": self.precision,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "scheduler": _plain(sched),
            "aux_loss": self.aux_loss.state_dict() if self.aux_loss is not None else None,
            "aux_optimizer": self.aux_opt.state_dict() if self.aux_opt is not None else None,
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
            "metrics": {"val_acc": val["accuracy"], "val_loss": val["loss"]} if val else {},
        }  # fmt: skip

    def save(self, path: Path, val: dict | None = None) -> Path:
        """Write :meth:`state` to ``path`` atomically; a full disk or unwritable folder is a one-line error."""
        try:
            return atomic_save(self.state(val), path)
        except OSError as e:
            raise FerlabError(
                f"cannot write checkpoint {path}: {e.strerror or e} (the last good one stays)"
            ) from None

    def resume(self, path: Path) -> None:
        """Continue the run in ``path``; refused when the config changed keys that shape the weights."""
        from .config import config_from_checkpoint, resume_changes

        ck = load_checkpoint(path)
        if ck["model_name"] != self.model.model_name:
            raise ConfigError(
                f"{path}: checkpoint of {ck['model_name']!r}, but the config trains {self.model.model_name!r}"
            )
        if ck.get("config") and not self.cfg.resume_changed_ok:
            diff = resume_changes(config_from_checkpoint(ck["config"]), self.cfg)
            if diff:
                shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(diff.items())[:6])
                raise ConfigError(
                    f"{path.parent} was trained with other settings ({shown}); resume with them unchanged, "
                    "give the run another name, or pass resume_changed_ok=true to continue anyway"
                )
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        if self.scheduler is not None and ck.get("scheduler"):
            self.scheduler.load_state_dict(ck["scheduler"])
        if self.aux_loss is not None and ck.get("aux_loss"):
            self.aux_loss.load_state_dict(ck["aux_loss"])
            self.aux_opt.load_state_dict(ck["aux_optimizer"])
        if self.ema is not None and ck.get("ema"):
            self.ema.module.load_state_dict(ck["ema"])
        torch.set_rng_state(ck["torch_rng"])
        self.epoch, self.step, self.best = ck["epoch"], ck["step"], ck["best_metric"]
        self.bad_epochs = ck.get("bad_epochs", 0)
        self.train_time = float(ck.get("train_time", 0.0))
        self.cpu_time = float(
            ck.get("cpu_time", self.train_time)
        )  # older checkpoints: wall time (an upper bound)
        self.history = list(ck.get("history", []))
        if self.is_main:
            print(f"resumed from {path} at epoch {self.epoch}", flush=True)

    # ------------------------------------------------------------------ logs
    def _tensorboard(self):
        if not (self.cfg.tensorboard and self.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.run_dir / "tb"))

    def _log(self, row: dict, writer) -> None:
        path = self.run_dir / "metrics.csv"
        rows = self.history
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        if writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    writer.add_scalar(k.replace("val_", "val/").replace("train_", "train/"), v, row["epoch"])


def cfg_seed_aug(seed: int, epoch: int, rank: int) -> int:
    """The augmentation seed of one (run seed, epoch, rank): distinct streams, reproducible on resume."""
    return (seed * 1_000_003 + epoch * 7919 + rank * 104_729) % (2**63 - 1)


def _plain(obj):
    """Scheduler state dicts hold only numbers/strings/lists in torch's own schedulers; drop anything else."""
    if obj is None or isinstance(obj, (int, float, str, bool, torch.Tensor)):
        return obj
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if not callable(v) or isinstance(v, torch.Tensor)}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return None


def train(config: str | Path | None = None, overrides=None) -> dict:
    """Library entry point of ``ferlab train``."""
    from .config import load_config

    cfg = load_config(config, overrides)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if cfg.device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        if cfg.device.startswith("cuda"):
            cfg.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    try:
        return Trainer(cfg).fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
