"""Photometric normalisation of face crops: histogram equalisation, CLAHE and LBP images.

All functions take and return uint8 images. Colour images are equalised on their luma channel (YCrCb),
so hues are kept; LBP images are always single-channel.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ConfigError
from ..io import as_array


def _on_luma(img: np.ndarray, fn) -> np.ndarray:
    img = as_array(img)
    if img.ndim == 2:
        return fn(img)
    ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = fn(np.ascontiguousarray(ycc[..., 0]))
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def equalize_hist(img: np.ndarray) -> np.ndarray:
    """Global histogram equalisation (``cv2.equalizeHist``); RGB images are equalised on luma."""
    return _on_luma(img, cv2.equalizeHist)


def clahe(img: np.ndarray, clip_limit: float = 2.0, tile_grid: tuple[int, int] = (8, 8)) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation; RGB images are equalised on luma.

    Args:
        img: uint8 ``[H, W]`` or ``[H, W, 3]``.
        clip_limit: contrast limit per tile (OpenCV's units; higher means stronger equalisation).
        tile_grid: number of tiles as ``(rows, cols)``.
    """
    op = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=tuple(int(t) for t in tile_grid))
    return _on_luma(img, op.apply)


def _lbp_levels(points: int, method: str) -> int:
    """The largest code ``local_binary_pattern`` can return for this method."""
    if method == "uniform":
        return points + 1
    if method == "nri_uniform":
        return points * (points - 1) + 2
    if method in ("default", "ror"):
        return 2**points - 1
    raise ConfigError(f"LBP method {method!r} is not valid; valid: default, nri_uniform, ror, uniform")


def lbp_image(img: np.ndarray, points: int = 8, radius: float = 1, method: str = "uniform") -> np.ndarray:
    """Local binary pattern codes as a uint8 image scaled to 0..255.

    Uses ``skimage.feature.local_binary_pattern``; colour images are converted to gray first. Codes
    ``0..K`` (``K = P+1`` for ``'uniform'``, ``P(P-1)+2`` for ``'nri_uniform'``, ``2**P-1`` for ``'default'`` and
    ``'ror'``) are multiplied by ``255 / K`` and rounded.
    """
    from skimage.feature import local_binary_pattern

    levels = _lbp_levels(int(points), method)
    gray = as_array(img, grayscale=True)
    codes = local_binary_pattern(gray, int(points), radius, method=method)
    return np.clip(np.rint(codes * (255.0 / levels)), 0, 255).astype(np.uint8)


def lbp_batch(images: np.ndarray, points: int = 8, radius: float = 1, method: str = "uniform") -> np.ndarray:
    """:func:`lbp_image` over a uint8 batch ``[N, H, W]`` or ``[N, H, W, 3]``; returns ``[N, H, W]`` uint8."""
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ConfigError(f"expected a batch [N,H,W] or [N,H,W,3], got shape {images.shape}")
    out = np.empty(images.shape[:3], dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = lbp_image(img, points, radius, method)
    return out
