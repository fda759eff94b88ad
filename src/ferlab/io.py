"""Reading images safely: every decoder failure becomes one line naming the file.

Handles EXIF orientation, palette/CMYK/RGBA/LA/16-bit/float modes, and truncated or non-image files.
Batch helpers skip bad files, count them by reason and report the count; nothing is lost silently.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageReadError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")


def _to_uint8(img: Image.Image) -> Image.Image:
    """Convert 16-bit / float / 32-bit integer images to 8-bit grayscale by scaling their range."""
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        return Image.fromarray(arr)
    arr = arr.astype(np.float64)
    if img.mode.startswith("I;16") or arr.max(initial=0) > 255:
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() <= 65535 else float(arr.max())
        arr = arr / hi * 255.0
    elif img.mode == "F" and arr.max(initial=0) <= 1.0:
        arr = arr * 255.0
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def to_mode(img: Image.Image, grayscale: bool) -> Image.Image:
    """Any PIL image -> 'L' (grayscale) or 'RGB'; alpha is composited on black."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        img = _to_uint8(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, img)
    target = "L" if grayscale else "RGB"
    return img if img.mode == target else img.convert(target)


def read_image(path: str | Path, grayscale: bool = False) -> np.ndarray:
    """Read an image file as uint8 ``[H, W]`` (grayscale) or ``[H, W, 3]`` RGB, EXIF-rotated upright.

    Raises:
        ImageReadError: one line naming the file and what is wrong (missing, not an image, truncated, empty).
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.load()
                im = ImageOps.exif_transpose(im)
                im = to_mode(im, grayscale)
                arr = np.asarray(im, dtype=np.uint8).copy()
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image file (format not recognised)") from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageReadError(f"{path}: corrupt or truncated image ({msg})") from None
    if arr.size == 0:
        raise ImageReadError(f"{path}: image has zero size")
    return arr


def as_array(image, grayscale: bool | None = None) -> np.ndarray:
    """A path, PIL image or numpy array -> uint8 numpy array (RGB or grayscale if asked)."""
    if isinstance(image, (str, Path)):
        return read_image(image, grayscale=bool(grayscale))
    if isinstance(image, Image.Image):
        return np.asarray(to_mode(ImageOps.exif_transpose(image), bool(grayscale)), dtype=np.uint8)
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ImageReadError(f"array of shape {arr.shape} is not an image ([H,W], [H,W,1|3|4] expected)")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if grayscale is True and arr.ndim == 3:
        arr = np.asarray(Image.fromarray(arr).convert("L"))
    elif grayscale is False and arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return arr


def list_images(root: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under ``root`` (by extension), sorted for reproducibility."""
    root = Path(root)
    it = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


@dataclass
class SkipReport:
    """Counts of skipped items by reason, with the first few messages for the log."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20

    def add(self, reason: str, message: str) -> None:
        self.counts[reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(message)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.counts:
            return "skipped 0 items"
        parts = ", ".join(f"{n} {r}" for r, n in self.counts.most_common())
        return f"skipped {self.total} items ({parts})"
