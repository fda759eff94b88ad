"""Reading images safely: every decoder failure becomes one line naming the file.

Handles EXIF orientation, palette/CMYK/RGBA/LA/16-bit/float modes, and truncated or non-image files.
Batch helpers skip bad files, count them by reason and report the count; nothing is lost silently.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ConfigError, ImageReadError

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


#: Largest image decoded, in pixels (width x height); ``FERLAB_MAX_PIXELS`` overrides it. 64 Mpx as RGB is
#: 192 MB; larger JPEGs are decoded at 1/2, 1/4 or 1/8 scale by the JPEG decoder itself (never at full size),
#: anything else over it is refused from its header, before decoding.
MAX_PIXELS = 64_000_000


def max_pixels() -> int:
    """The pixel limit in force (``FERLAB_MAX_PIXELS`` or :data:`MAX_PIXELS`)."""
    import os

    val = os.environ.get("FERLAB_MAX_PIXELS", "").strip()
    return int(val) if val.isdigit() and int(val) > 0 else MAX_PIXELS


def display_name(path) -> str:
    """A path as printable text, whatever bytes its name holds (undecodable bytes as ``\\xNN``)."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _open_bounded(src, name: str, limit: int):
    """``Image.open`` plus the pixel check from the header; JPEGs over the limit get a reduced draft."""
    try:
        im = Image.open(src)
    except Image.DecompressionBombError:
        raise ImageReadError(
            f"{name}: image over {limit / 1e6:.0f} Mpx (raise FERLAB_MAX_PIXELS to read it)"
        ) from None
    w, h = im.size
    if w * h > limit:
        scale = next((k for k in (2, 4, 8) if (w // k) * (h // k) <= limit), None)
        if im.format == "JPEG" and scale is not None:
            im.draft(im.mode, (w // scale, h // scale))  # the decoder itself skips to 1/scale: memory-bounded
        else:
            im.close()
            raise ImageReadError(
                f"{name}: {w}x{h} = {w * h / 1e6:.0f} Mpx is over the {limit / 1e6:.0f} Mpx limit "
                "(raise FERLAB_MAX_PIXELS to read it)"
            )
    return im


def decode_image(src, name: str, grayscale: bool = False, limit: int | None = None) -> np.ndarray:
    """Decode a file path or a file-like object of image bytes (as :func:`read_image` does)."""
    limit = limit or max_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _open_bounded(src, name, limit) as im:
                im.load()
                im = ImageOps.exif_transpose(im)
                im = to_mode(im, grayscale)
                arr = np.asarray(im, dtype=np.uint8).copy()
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image file (format not recognised)") from None
    except Image.DecompressionBombError:
        raise ImageReadError(
            f"{name}: image over the pixel limit (raise FERLAB_MAX_PIXELS to read it)"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageReadError(f"{name}: corrupt or truncated image ({msg})") from None
    except MemoryError:
        raise ImageReadError(f"{name}: not enough memory to decode it") from None
    if arr.size == 0:
        raise ImageReadError(f"{name}: image has zero size")
    return arr


def read_image(path: str | Path, grayscale: bool = False, limit: int | None = None) -> np.ndarray:
    """Read an image file as uint8 ``[H, W]`` (grayscale) or ``[H, W, 3]`` RGB, EXIF-rotated upright.

    Images over ``limit`` pixels (default :func:`max_pixels`, 64 Mpx) are refused from their header, except
    JPEGs, which are decoded at the largest of 1/2, 1/4, 1/8 scale that fits (the array then has that size).

    Raises:
        ImageReadError: one line naming the file and what is wrong (missing, not an image, truncated, empty,
            too large).
    """
    path = Path(path)
    name = display_name(path)
    if not path.exists():
        raise ImageReadError(f"{name}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{name}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{name}: empty file")
    return decode_image(path, name, grayscale, limit)


def write_image(path: str | Path, rgb: np.ndarray, jpeg_quality: int = 90) -> Path:
    """Write an RGB (or grayscale) uint8 image, atomically, to any path name (OpenCV encodes in memory,
    Python writes the bytes, so names that are not valid UTF-8 work too). PNG unless the suffix is JPEG."""
    import cv2

    from .errors import FerlabError

    path = Path(path)
    ext = ".jpg" if path.suffix.lower() in (".jpg", ".jpeg") else ".png"
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise FerlabError(f"{display_name(path)}: could not encode the image")
    try:
        return write_atomic(buf.tobytes(), path)
    except OSError as e:
        raise FerlabError(f"{display_name(path)}: could not write ({e.strerror or e})") from None


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
    """Skipped items: a count per reason and every message (file or row named), for summaries and lists."""

    counts: Counter = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)
    max_examples: int = 20

    def add(self, reason: str, message: str) -> None:
        self.counts[reason] += 1
        self.messages.append(message)

    def merge(self, other: SkipReport | None) -> SkipReport:
        """Add another report's items to this one (returns self)."""
        if other is not None and other is not self:
            self.counts.update(other.counts)
            self.messages.extend(other.messages)
        return self

    @property
    def examples(self) -> list[str]:
        """The first ``max_examples`` messages."""
        return self.messages[: self.max_examples]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.counts:
            return "skipped 0 items"
        parts = ", ".join(f"{n} {r}" for r, n in self.counts.most_common())
        return f"skipped {self.total} items ({parts})"

    def announce(
        self, label: str, full_list: str | Path | None = None, first: int = 5, file=None
    ) -> Path | None:
        """Print the summary and the first ``first`` messages; write every message to ``full_list`` (if given).

        Nothing is printed or written when nothing was skipped. Returns the list file written, if any.
        """
        import sys

        if not self.total:
            return None
        file = file or sys.stderr
        print(f"{label}: {self.summary()}", file=file)
        for m in self.messages[:first]:
            print(f"  {m}", file=file)
        written = None
        if full_list is not None:
            written = write_atomic("\n".join(self.messages) + "\n", full_list)
            print(f"  all {self.total}: {display_name(written)}", file=file)
        elif self.total > first:
            print(f"  ... and {self.total - first} more", file=file)
        return written


def temp_path(path: str | Path, keep_suffix: bool = False) -> Path:
    """The temporary name a file is written under before it replaces ``path``: beside it, hidden, marked with
    this process id; ``keep_suffix`` for writers that choose the format by the suffix (images)."""
    import os

    path = Path(path)
    if keep_suffix:
        return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False):
    """Write to the yielded temporary path; when the block succeeds it replaces ``path`` (``os.replace``: a
    kill never leaves a torn file), when it fails it is removed. Parent folders are created. The one way
    ferlab writes files: checkpoints, weights, ensembles, datasets, reports, figures, tables.

    Example:
        >>> with atomic_path("out/model.pt") as tmp:
        ...     torch.save(obj, tmp)
    """
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, keep_suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(data: bytes | str, path: str | Path) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def _check_image(img) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)) or img.size == 0:
        raise ImageReadError(f"array of shape {img.shape} is not an image ([H,W] or [H,W,3] expected)")
    if img.dtype != np.uint8:
        raise ImageReadError(f"image of dtype {img.dtype}; uint8 expected (use ferlab.io.as_array)")
    return img


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if int(h) < 1 or int(w) < 1:
        raise ConfigError(f"size {size!r} must be positive (an int or (height, width))")
    return int(h), int(w)


def resize(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a uint8 image to ``size`` (an int for a square, or ``(height, width)``).

    Uses area interpolation when shrinking (no aliasing) and bilinear when growing. Grayscale stays
    ``[H, W]`` and colour stays ``[H, W, C]``.
    """
    img = _check_image(img)
    h, w = _hw(size)
    if img.shape[:2] == (h, w):
        return img.copy()
    import cv2

    shrink = h * w < img.shape[0] * img.shape[1]
    out = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if img.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel axis
        out = out[..., None]
    return out


def expand_globs(specs, what: str = "file") -> list[str]:
    """Arguments with shell patterns (``*``, ``?``, ``[``) expanded in sorted order; a pattern that matches
    nothing is a one-line error naming it (``what`` names the kind of argument)."""
    import glob

    from .errors import ConfigError

    out = []
    for c in specs:
        hits = sorted(glob.glob(str(c), recursive=True)) if any(ch in str(c) for ch in "*?[") else [str(c)]
        if not hits:
            raise ConfigError(f"no {what} matches {str(c)!r}")
        out += hits
    return out
