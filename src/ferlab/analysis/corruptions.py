"""Controlled corruptions of uint8 face crops, each with a severity grid (for ``ferlab robustness``).

Every corruption maps a batch ``[N,H,W]`` (grayscale) or ``[N,H,W,3]`` (RGB) of uint8 crops to a batch of
the same shape and dtype. Randomness (patch positions, motion-blur directions) comes only from the
generator :func:`corrupt` derives from ``(seed, corruption, severity)``, so the same seed gives the same
corrupted images for every checkpoint and every run. Pixel sizes (blur widths) are given for a 48-px face
and scaled with the crop side, so a severity means the same thing on FER2013 (48 px) and RAF-DB (100 px).

=================  ====================================  ==============================================
corruption         severity                              how
=================  ====================================  ==============================================
rotation           degrees, -45..+45                     about the centre, bilinear, edge pixels
                                                         replicated (as the training augmentation)
occlusion_random   % of the face: 10, 25, 50             black square patches (side = 1/6 of the crop)
                                                         at random places until exactly that fraction
                                                         of the pixels is covered
occlusion_eyes     % of the face: 10, 25, 50             a black band (2.2:1) grown from the eyes'
                                                         place in a FER2013-framed crop (37 % height)
occlusion_mouth    % of the face: 10, 25, 50             a black box (1.6:1) grown from the mouth
                                                         (77 % height); it slides up at the border
brightness         %, -70..+70                           every pixel times (1 + s/100)
contrast           %, -70..+70                           distance to the image's mean times (1 + s/100)
gaussian_blur      sigma in px of a 48-px face           ``cv2.GaussianBlur``, reflected border
motion_blur        streak length in px of a 48-px face   a line kernel in a random direction per image
jpeg               JPEG quality 90..5 (lower is worse)   encode + decode with Pillow
=================  ====================================  ==============================================

Region masks cover exactly ``round(fraction * H * W)`` pixels (the pixels nearest the region centre in
the box distance), and random patches are trimmed to the same count, so the occluded fraction is the
requested one to within half a pixel.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image

from ..errors import ConfigError, unknown_name

REFERENCE_SIDE = 48  # pixel sizes of blurs are given for a face of this side


def _as_batch(images) -> np.ndarray:
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise ConfigError(f"corruptions take uint8 face crops, got dtype {a.dtype}")
    if a.ndim not in (3, 4) or (a.ndim == 4 and a.shape[-1] not in (1, 3)):
        raise ConfigError(f"face batch of shape {a.shape} is not [N,H,W] or [N,H,W,3]")
    return a


def _round_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# -- geometric ------------------------------------------------------------------------------------------
def rotate(images, degrees: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Rotate each crop by ``degrees`` (counter-clockwise) about its centre; 0 is the identity."""
    a = _as_batch(images)
    h, w = a.shape[1:3]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), float(degrees), 1.0)
    out = np.empty_like(a)
    for i, img in enumerate(a):
        r = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[i] = r.reshape(img.shape)
    return out


# -- occlusion ------------------------------------------------------------------------------------------
#: Region centres (x, y as fractions of the crop) and box aspect (width : height) in a FER2013-framed crop,
#: read off the mean FER2013 test face (eyes at 37 % of the height, mouth at 77 %).
REGIONS = {"eyes": (0.5, 0.37, 2.2), "mouth": (0.5, 0.77, 1.6)}


@lru_cache(maxsize=64)
def region_mask(h: int, w: int, region: str, fraction: float) -> np.ndarray:
    """Boolean ``[H, W]`` mask of exactly ``round(fraction*H*W)`` pixels around ``region`` (see REGIONS).

    The pixels are taken in order of the box distance ``max(|dx|/aspect, |dy|)`` from the region centre,
    so the mask is a box of the region's aspect that slides along the border when it reaches it.
    """
    if region not in REGIONS:
        raise unknown_name("occlusion region", region, REGIONS)
    cx, cy, aspect = REGIONS[region]
    k = round(fraction * h * w)
    yy, xx = np.mgrid[0:h, 0:w]
    dx = np.abs(xx + 0.5 - cx * w) / aspect
    dy = np.abs(yy + 0.5 - cy * h)
    d = np.maximum(dx, dy).ravel()
    order = np.lexsort((np.arange(h * w), dx.ravel() + dy.ravel(), d))  # nearest first, ties stable
    m = np.zeros(h * w, bool)
    m[order[:k]] = True
    m = m.reshape(h, w)
    m.setflags(write=False)
    return m


def random_patch_mask(h: int, w: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean ``[H, W]`` mask of random square patches (side = 1/6 of the crop) covering exactly
    ``round(fraction*H*W)`` pixels: patches are added until the union would pass the target, and the last
    one contributes only the pixels still needed (in raster order)."""
    k = round(fraction * h * w)
    side = max(1, round(min(h, w) / 6))
    m = np.zeros((h, w), bool)
    have = 0
    while have < k:
        y0 = int(rng.integers(0, h - side + 1))
        x0 = int(rng.integers(0, w - side + 1))
        patch = np.zeros((h, w), bool)
        patch[y0 : y0 + side, x0 : x0 + side] = True
        new = np.flatnonzero(patch & ~m)
        take = new[: k - have]
        m.flat[take] = True
        have += len(take)
    return m


def _occlude(a: np.ndarray, masks, fill: int = 0) -> np.ndarray:
    out = a.copy()
    for i, m in enumerate(masks):
        out[i][m] = fill
    return out


def occlude_random(images, percent: float, rng: np.random.Generator) -> np.ndarray:
    """Black random patches over ``percent`` % of each crop (a new layout per image from ``rng``)."""
    a = _as_batch(images)
    h, w = a.shape[1:3]
    return _occlude(a, [random_patch_mask(h, w, percent / 100, rng) for _ in range(len(a))])


def occlude_region(images, percent: float, region: str) -> np.ndarray:
    """A black box over ``percent`` % of each crop centred on ``region`` ('eyes' or 'mouth')."""
    a = _as_batch(images)
    m = region_mask(a.shape[1], a.shape[2], region, percent / 100)
    return _occlude(a, [m] * len(a))


# -- photometric ----------------------------------------------------------------------------------------
def brightness(images, percent: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Multiply every pixel by ``1 + percent/100`` (clipped to 0..255); 0 is the identity."""
    a = _as_batch(images)
    return _round_u8(a.astype(np.float32) * (1 + percent / 100))


def contrast(images, percent: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Scale each pixel's distance to its image's mean by ``1 + percent/100``; 0 is the identity."""
    a = _as_batch(images)
    x = a.astype(np.float32)
    mean = x.reshape(len(a), -1).mean(1).reshape((-1,) + (1,) * (a.ndim - 1))
    return _round_u8((x - mean) * (1 + percent / 100) + mean)


# -- blur and compression -------------------------------------------------------------------------------
def gaussian_blur(images, sigma: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` px at a 48-px face (scaled with the crop side)."""
    a = _as_batch(images)
    s = sigma * min(a.shape[1:3]) / REFERENCE_SIDE
    out = np.empty_like(a)
    for i, img in enumerate(a):
        out[i] = cv2.GaussianBlur(img, (0, 0), sigmaX=s, borderType=cv2.BORDER_REFLECT_101).reshape(img.shape)
    return out


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A normalised line kernel of ``length`` px at ``angle_deg`` (sub-pixel samples, bilinear splat)."""
    k = int(np.ceil(length)) | 1
    ker = np.zeros((k, k), np.float32)
    c = (k - 1) / 2
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, max(2, int(length * 8)))
    xs = c + t * np.cos(np.radians(angle_deg))
    ys = c - t * np.sin(np.radians(angle_deg))
    for x, y in zip(xs, ys):
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                if 0 <= y0 + dy < k and 0 <= x0 + dx < k:
                    ker[y0 + dy, x0 + dx] += wy * wx
    return ker / ker.sum()


def motion_blur(images, length: float, rng: np.random.Generator) -> np.ndarray:
    """Linear motion blur of ``length`` px at a 48-px face, in a random direction per image."""
    a = _as_batch(images)
    n = length * min(a.shape[1:3]) / REFERENCE_SIDE
    angles = rng.uniform(0, 180, len(a))
    out = np.empty_like(a)
    for i, img in enumerate(a):
        f = cv2.filter2D(
            img.astype(np.float32), -1, motion_kernel(n, angles[i]), borderType=cv2.BORDER_REFLECT_101
        )
        out[i] = _round_u8(f).reshape(img.shape)
    return out


def jpeg(images, quality: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """JPEG encode at ``quality`` (1..95) and decode again (Pillow, 4:2:0 chroma for RGB)."""
    a = _as_batch(images)
    out = np.empty_like(a)
    for i, img in enumerate(a):
        im = Image.fromarray(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(quality))
        out[i] = np.asarray(Image.open(io.BytesIO(buf.getvalue()))).reshape(img.shape)
    return out


# -- the registry ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Corruption:
    """One corruption: its severity grid and unit, the plot panel it belongs to, and the papers' buckets
    (name -> predicate on the severity; the identity severity is never in a bucket)."""

    name: str
    fn: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    severities: tuple[float, ...]
    unit: str
    family: str
    identity: float | None = None  # the severity at which the corruption changes nothing
    buckets: dict[str, Callable[[float], bool]] = field(default_factory=dict)

    def __call__(self, images, severity: float, seed: int = 0) -> np.ndarray:
        return corrupt(images, self.name, severity, seed)


_SYM = (-70, -60, -50, -40, -30, -20, -10, 0, 10, 20, 30, 40, 50, 60, 70)
_PHOTO_BUCKETS = {"within ±30%": lambda s: 0 < abs(s) <= 30, "beyond ±50%": lambda s: abs(s) > 50}
_OCC = (10, 25, 50)

CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("rotation", rotate, (-45, -40, -30, -20, -10, 0, 10, 20, 30, 40, 45), "degrees", "rotation", 0,
                   {"within ±30°": lambda s: 0 < abs(s) <= 30, "beyond ±30°": lambda s: abs(s) > 30}),
        Corruption("occlusion_random", occlude_random, _OCC, "% of face", "occlusion"),
        Corruption("occlusion_eyes", lambda a, s, g: occlude_region(a, s, "eyes"), _OCC, "% of face", "occlusion"),
        Corruption("occlusion_mouth", lambda a, s, g: occlude_region(a, s, "mouth"), _OCC, "% of face", "occlusion"),
        Corruption("brightness", brightness, _SYM, "%", "brightness / contrast", 0, _PHOTO_BUCKETS),
        Corruption("contrast", contrast, _SYM, "%", "brightness / contrast", 0, _PHOTO_BUCKETS),
        Corruption("gaussian_blur", gaussian_blur, (0.5, 1, 1.5, 2, 3), "sigma, px @48", "blur"),
        Corruption("motion_blur", motion_blur, (3, 5, 7, 9, 11), "length, px @48", "blur"),
        Corruption("jpeg", jpeg, (90, 70, 50, 30, 20, 10, 5), "JPEG quality", "jpeg"),
    )
}  # fmt: skip


def corruption_rng(name: str, severity: float, seed: int = 0) -> np.random.Generator:
    """The generator of one (corruption, severity) under ``seed``: independent of call order."""
    return np.random.default_rng([int(seed), zlib.crc32(f"{name}:{float(severity):g}".encode())])


def corrupt(images, name: str, severity: float, seed: int = 0) -> np.ndarray:
    """Apply corruption ``name`` at ``severity`` to a uint8 batch, deterministically under ``seed``."""
    if name not in CORRUPTIONS:
        raise unknown_name("corruption", name, CORRUPTIONS)
    return CORRUPTIONS[name].fn(_as_batch(images), severity, corruption_rng(name, severity, seed))
