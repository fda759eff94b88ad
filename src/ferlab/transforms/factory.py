"""The one transform factory shared by training, evaluation and inference.

``create_transform(data_config, is_training, augment)`` returns a :class:`FaceTransform`: a callable that
turns a *batch* of uint8 face crops (numpy ``[N,H,W]`` / ``[N,H,W,3]`` or torch ``[N,C,H,W]`` uint8) into
the model's normalised float input ``[N, C, H, W]``. All steps run on batch tensors, so in-memory datasets
such as FER2013 are augmented at thousands of images per second and the data loader is never the
bottleneck. The evaluation transform is exactly what inference uses (``ferlab.infer.predict`` calls it too):

1. colour: grayscale <-> RGB to the model's ``color`` (luminance weights 0.299/0.587/0.114); a 'gray'
   model with 3 input channels gets the grey plane three times;
2. resize to the model's input size (bilinear, antialiased when shrinking);
3. training only: per-sample random affine (rotation, scale, translation, horizontal flip) in one
   ``grid_sample``, brightness/contrast jitter, random erasing — all drawn from one ``torch.Generator``,
   so a seed reproduces a batch exactly;
4. LBP channel (models with ``lbp=True``, Wang 2024 (AEMT)): uniform LBP of the (augmented) grayscale image;
5. normalise with the model's mean/std.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .data_config import DataConfig


@dataclass
class AugmentConfig:
    """Training augmentation. Probabilities in [0, 1]; magnitudes as stated."""

    hflip: float = 0.5  # probability of a horizontal flip
    rotate: float = 10.0  # max rotation, degrees (uniform in [-rotate, rotate])
    scale: tuple[float, float] = (0.9, 1.1)  # zoom factor range (>1 zooms in)
    translate: float = 0.1  # max shift as a fraction of the side
    brightness: float = 0.2  # factor uniform in [1-b, 1+b]
    contrast: float = 0.2  # factor uniform in [1-c, 1+c] around each image's mean
    erasing: float = 0.25  # probability of erasing one random rectangle
    erasing_area: tuple[float, float] = (0.02, 0.2)  # fraction of the image erased
    padding_mode: str = "border"  # grid_sample padding for the affine: border | zeros | reflection

    @classmethod
    def from_dict(cls, d: dict | None) -> AugmentConfig:
        if d is None:
            return cls()
        if isinstance(d, AugmentConfig):
            return d
        valid = {f.name for f in fields(cls)}
        bad = sorted(set(d) - valid)
        if bad:
            raise ConfigError(f"unknown augmentation option(s) {bad}; valid: {sorted(valid)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(hflip=0, rotate=0, scale=(1, 1), translate=0, brightness=0, contrast=0, erasing=0)

    def to_dict(self) -> dict:
        return asdict(self)


def to_tensor_batch(images) -> torch.Tensor:
    """uint8 numpy ``[N,H,W]``/``[N,H,W,C]`` or torch ``[N,C,H,W]`` -> uint8 torch ``[N,C,H,W]``."""
    if isinstance(images, torch.Tensor):
        t = images
        if t.ndim == 3:
            t = t[:, None]
        return t
    a = np.asarray(images)
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 3:
        return torch.from_numpy(np.ascontiguousarray(a))[:, None]
    if a.ndim == 4:
        return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)
    raise ConfigError(f"image batch of shape {a.shape} is not [N,H,W] or [N,H,W,C]")


def _to_color(x: torch.Tensor, color: str) -> torch.Tensor:
    c = x.shape[1]
    if color == "gray":
        if c == 3:
            w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            return (x * w).sum(1, keepdim=True)
        return x
    if c == 1:
        return x.expand(-1, 3, -1, -1)
    return x


def _affine(x: torch.Tensor, a: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    u = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    ang = (u(n) * 2 - 1) * math.radians(a.rotate)
    s = a.scale[0] + u(n) * (a.scale[1] - a.scale[0])
    tx, ty = ((u(n) * 2 - 1) * a.translate * 2, (u(n) * 2 - 1) * a.translate * 2)  # normalised coords span 2
    flip = torch.where(u(n) < a.hflip, -1.0, 1.0)
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=a.padding_mode, align_corners=False)


def _jitter(x: torch.Tensor, a: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    if a.brightness > 0:
        b = 1 + (torch.rand(n, generator=g) * 2 - 1) * a.brightness
        x = x * b.view(n, 1, 1, 1)
    if a.contrast > 0:
        c = 1 + (torch.rand(n, generator=g) * 2 - 1) * a.contrast
        m = x.mean((1, 2, 3), keepdim=True)
        x = (x - m) * c.view(n, 1, 1, 1) + m
    return x.clamp(0, 255)


def erase_mask(
    n: int, h: int, w: int, p: float, area: tuple[float, float], g: torch.Generator
) -> torch.Tensor:
    """Boolean ``[N,1,H,W]`` masks of one random rectangle per sample (with probability ``p``)."""
    frac = area[0] + torch.rand(n, generator=g) * (area[1] - area[0])
    logr = (torch.rand(n, generator=g) * 2 - 1) * math.log(3.3)
    ratio = torch.exp(logr)
    eh = (torch.sqrt(frac * h * w * ratio)).clamp(1, h).round()
    ew = (torch.sqrt(frac * h * w / ratio)).clamp(1, w).round()
    y0 = (torch.rand(n, generator=g) * (h - eh + 1)).floor()
    x0 = (torch.rand(n, generator=g) * (w - ew + 1)).floor()
    on = torch.rand(n, generator=g) < p
    yy = torch.arange(h).view(1, h, 1)
    xx = torch.arange(w).view(1, 1, w)
    m = (
        (yy >= y0.view(n, 1, 1))
        & (yy < (y0 + eh).view(n, 1, 1))
        & (xx >= x0.view(n, 1, 1))
        & (xx < (x0 + ew).view(n, 1, 1))
    )
    return (m & on.view(n, 1, 1))[:, None]


def augment_batch(x: torch.Tensor, a: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Random augmentation of a float batch in the 0..255 range (shape and range kept)."""
    if a.rotate or a.translate or a.hflip or a.scale != (1, 1):
        x = _affine(x, a, g)
    x = _jitter(x, a, g)
    if a.erasing > 0:
        m = erase_mask(x.shape[0], x.shape[2], x.shape[3], a.erasing, a.erasing_area, g)
        noise = torch.rand(x.shape, generator=g) * 255
        x = torch.where(m, noise, x)
    return x


def lbp_channel(x: torch.Tensor) -> torch.Tensor:
    """Uniform LBP (P=8, R=1) of a float 0..255 batch ``[N,C,H,W]`` -> ``[N,1,H,W]`` in 0..255."""
    from ..faces.photometric import lbp_batch

    gray = _to_color(x, "gray")[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()
    return torch.from_numpy(lbp_batch(gray).astype(np.float32))[:, None]


class FaceTransform:
    """Batch transform built by :func:`create_transform` (see the module docstring for the steps)."""

    def __init__(self, data_config, is_training: bool = False, augment: AugmentConfig | dict | None = None):

        self.cfg = data_config if isinstance(data_config, DataConfig) else DataConfig.from_dict(data_config)
        self.is_training = is_training
        self.augment = AugmentConfig.from_dict(augment) if is_training else None
        c = self.cfg.input_size[0]
        self.mean = torch.tensor(self.cfg.mean, dtype=torch.float32).view(1, c, 1, 1) * 255
        self.std = torch.tensor(self.cfg.std, dtype=torch.float32).view(1, c, 1, 1) * 255

    def __call__(self, images, generator: torch.Generator | None = None) -> torch.Tensor:
        x = to_tensor_batch(images)
        if x.dtype != torch.uint8:
            raise ConfigError(f"face batch has dtype {x.dtype}; uint8 crops (0..255) expected")
        x = _to_color(x.float(), self.cfg.color)
        if x.shape[1] == 1 and self.cfg.input_size[0] - int(self.cfg.lbp) == 3:
            x = x.expand(-1, 3, -1, -1)  # grayscale model fed 3 identical planes (e.g. ResEmoteNet)
        h, w = self.cfg.input_size[1:]
        if x.shape[-2:] != (h, w):
            shrink = x.shape[-2] > h or x.shape[-1] > w
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)
        if self.is_training and self.augment is not None:
            g = (
                generator
                if generator is not None
                else torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,))))
            )
            x = augment_batch(x, self.augment, g)
        if self.cfg.lbp:
            x = torch.cat([x, lbp_channel(x)], 1)
        return (x - self.mean) / self.std

    def __repr__(self) -> str:
        return f"FaceTransform(cfg={self.cfg}, is_training={self.is_training}, augment={self.augment})"


def create_transform(
    data_config, is_training: bool = False, augment: AugmentConfig | dict | None = None
) -> FaceTransform:
    """The transform for a model's data config (``model.data_config``); ``augment`` only when training."""
    return FaceTransform(data_config, is_training, augment)
