"""Class activation maps of ferlab models (``ferlab explain``), with the ``grad-cam`` package.

:class:`CamExplainer` hooks the model's own ``gradcam_layer`` (every registered model names the module
whose output is its last spatial feature map) and computes Grad-CAM, Grad-CAM++ or Score-CAM for one
face crop at a time: the crop goes through the model's evaluation transform (as in ``ferlab evaluate``),
and the map comes back at the model's input size, in [0, 1] (``pytorch_grad_cam`` rescales each map by
its own min and max; a map that is zero everywhere stays zero).

``explain`` runs it for several checkpoints over the same faces — photos (the largest face found by the
Haar detector, cropped as :class:`ferlab.Recognizer` does), ready crops (``detect=False``) or a seeded
sample of a dataset split — and writes one overlay PNG per face, checkpoint and explained class, a grid
(rows: faces; columns: the face, then one overlay per checkpoint and class with the predicted label) and
``explain.json``.

Install the optional dependency with ``pip install -e ".[explain]"`` (``pip install grad-cam``).
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError, FerlabError
from ..io import write_atomic

if TYPE_CHECKING:  # annotations only; torch is imported where it runs
    import torch

METHODS = ("gradcam", "gradcam++", "scorecam")


def _cam_class(method: str):
    try:
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM
    except ImportError as e:
        raise FerlabError(
            f"ferlab explain needs the grad-cam package ({e}); install it with: pip install -e '.[explain]'"
        ) from None
    table = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "scorecam": ScoreCAM}
    if method not in table:
        raise ConfigError(f"unknown CAM method {method!r}; valid: {', '.join(METHODS)}")
    return table[method]


class CamExplainer:
    """Heat maps of one model on its ``gradcam_layer``.

    Example:
        >>> ex = CamExplainer(model, "gradcam")
        >>> cam, probs = ex(crop)              # crop: uint8 [H,W] or [H,W,3]; cam: float32 [h,w] in [0,1]
        >>> cam, _ = ex(crop, target=2)        # the map of class 2 instead of the predicted class
        >>> ex.close()
    """

    def __init__(self, model, method: str = "gradcam", device: str = "cpu") -> None:
        from ..transforms import create_transform

        cls = _cam_class(method)
        self.model = model.eval().to(device)
        self.method, self.device = method, device
        name = getattr(model, "gradcam_layer", "")
        if not name:
            raise ConfigError(f"{type(model).__name__} names no gradcam_layer")
        self.layer_name = name
        self.transform = create_transform(model.data_config, is_training=False)
        self.cam = cls(model=self.model, target_layers=[self.model.get_submodule(name)])
        if method == "scorecam":
            self.cam.batch_size = 32

    def input(self, crop: np.ndarray) -> torch.Tensor:

        return self.transform(np.asarray(crop)[None]).to(self.device)

    def __call__(self, crop: np.ndarray, target: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(cam [h, w] float32 in [0, 1], class probabilities [C])`` for one uint8 crop; ``target`` is
        the class index to explain (default: the predicted class)."""
        import torch
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        x = self.input(crop)
        with torch.enable_grad():
            cams = self.cam(
                input_tensor=x, targets=None if target is None else [ClassifierOutputTarget(int(target))]
            )
        probs = torch.softmax(self.cam.outputs.detach().float(), -1)[0].cpu().numpy()
        cam = np.nan_to_num(np.asarray(cams[0], np.float32), nan=0.0)
        return np.clip(cam, 0.0, 1.0), probs

    def close(self) -> None:
        self.cam.activations_and_grads.release()

    def __enter__(self) -> CamExplainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def overlay(crop: np.ndarray, cam: np.ndarray, size: int = 192, alpha: float = 0.45) -> np.ndarray:
    """The crop (resized to ``size``, as RGB) blended with the jet-coloured heat map: uint8 ``[size,size,3]``."""
    import cv2

    img = np.asarray(crop)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    heat = cv2.resize(np.asarray(cam, np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    col = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)[..., ::-1].astype(
        np.float32
    )
    return np.clip((1 - alpha) * img + alpha * col, 0, 255).astype(np.uint8)


@dataclass
class Face:
    """One face to explain: its crop, where it came from, and its true class when known."""

    crop: np.ndarray
    source: str
    true: str | None = None
    results: dict = field(
        default_factory=dict
    )  # checkpoint -> {"predicted", "confidence", "maps": {cls: cam}}


def faces_from_files(
    paths, detect: bool = True, margin: float = 0.1, min_face: int = 24
) -> tuple[list[Face], list[str]]:
    """Faces from image files or folders of them: the largest Haar face of each photo (``detect``), or the
    whole image as a ready crop. Returns ``(faces, skipped messages)``."""
    from ..errors import ImageReadError
    from ..faces import FacePreprocessor
    from ..io import list_images, read_image

    files = []
    for p in map(Path, paths):
        files += list_images(p) if p.is_dir() else [p]
    pre = FacePreprocessor("haar", margin=margin, size=None, grayscale=False, align=False,
                           detector_options={"min_size": min_face}) if detect else None  # fmt: skip
    faces, skipped = [], []
    for f in files:
        try:
            img = read_image(f, grayscale=False)
        except ImageReadError as e:
            skipped.append(str(e))
            continue
        if pre is None:
            faces.append(Face(img, str(f)))
            continue
        hit = pre.largest(img)
        if hit is None:
            skipped.append(f"{f}: no face found (pass --no-detect for ready crops)")
        else:
            faces.append(Face(hit[1], str(f)))
    return faces, skipped


def faces_from_dataset(
    dataset: str, split: str, data_dir=None, limit: int | None = 8, seed: int = 0, models=()
):
    """A seeded sample of a dataset split as :class:`Face` objects (with their true class)."""
    from ._common import load_split_sample

    sp = load_split_sample(dataset, split, data_dir, limit, seed, models)
    idx = sp.sample_index  # positions in the full split, for the row titles
    return [
        Face(sp.images[i], f"{dataset}/{split}[{j}]", sp.classes[int(sp.labels[i])])
        for i, j in enumerate(idx)
    ]


def _targets(spec: str, classes) -> list[int | None]:
    if spec in (None, "predicted"):
        return [None]
    if spec == "all":
        return list(range(len(classes)))
    if spec not in classes:
        raise ConfigError(f"unknown class {spec!r}; valid: predicted, all, {', '.join(classes)}")
    return [list(classes).index(spec)]


def explain_faces(
    faces: list[Face], models, method: str = "gradcam", target: str = "predicted"
) -> list[Face]:
    """Fill ``face.results[label]`` for every ``(label, model)``: the predicted class, its probability and
    a map per explained class (``target``: 'predicted', 'all' or a class name)."""
    for label, model in models:
        classes = tuple(getattr(model, "classes", None) or [str(i) for i in range(model.num_classes)])
        tg = _targets(target, classes)
        with CamExplainer(model, method) as ex:
            for face in faces:
                maps, probs = {}, None
                for t in tg:
                    cam, p = ex(face.crop, t)
                    probs = p if probs is None else probs
                    maps[classes[int(p.argmax())] if t is None else classes[t]] = cam
                k = int(probs.argmax())
                face.results[label] = {"predicted": classes[k], "confidence": float(probs[k]), "maps": maps,
                                       "probs": {c: float(v) for c, v in zip(classes, probs)}}  # fmt: skip
    return faces


def plot_grid(faces: list[Face], labels: list[str], path: str | Path, method: str = "gradcam") -> Path:
    """Rows: faces; columns: the face, then each checkpoint's overlay(s) titled with the predicted label."""
    from ..plots import pyplot, save_figure

    plt = pyplot()
    cols = [(label, j) for label in labels for j in range(len(faces[0].results[label]["maps"]))]
    nrow, ncol = len(faces), 1 + len(cols)
    height = 2.6 * nrow + 0.4
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.1 * ncol, height), squeeze=False)
    for i, face in enumerate(faces):
        shown = overlay(face.crop, np.zeros((2, 2), np.float32), alpha=0.0)
        axes[i, 0].imshow(shown)
        name = Path(face.source).name if "/" in face.source and Path(face.source).suffix else face.source
        axes[i, 0].set_title((name[:22] + (f"\ntrue: {face.true}" if face.true else "")), fontsize=8)
        for j, (label, k) in enumerate(cols, start=1):
            r = face.results[label]
            cls_here, cam = list(r["maps"].items())[k]  # with 'predicted' the class differs per face
            ax = axes[i, j]
            ax.imshow(overlay(face.crop, cam))
            if len(r["maps"]) == 1:
                head = f"{textwrap.fill(label, 24)}\npred {r['predicted']} ({100 * r['confidence']:.0f}%)"
                head += "" if cls_here == r["predicted"] else f"\nmap: {cls_here}"
            else:  # one column per class: name the map, mark the predicted one
                mark = " = pred" if cls_here == r["predicted"] else ""
                head = f"{textwrap.fill(label, 24)}\nmap {cls_here} ({100 * r['probs'][cls_here]:.0f}%){mark}"
            ax.set_title(head, fontsize=7, color="green" if face.true in (None, r["predicted"]) else "red")
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(
        f"{method}: rows are faces, columns the face then each checkpoint (green: correct)", fontsize=9
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / height))
    return save_figure(fig, path, dpi=100, layout=False)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_")[:60] or "x"


def write_explanations(faces: list[Face], labels: list[str], out_dir: str | Path, method: str) -> dict:
    """Overlay PNGs (``overlays/<face>/<checkpoint>__<class>.png``), the grid and ``explain.json``."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for i, face in enumerate(faces):
        fdir = (
            out
            / "overlays"
            / f"{i:03d}_{_slug(Path(face.source).stem if Path(face.source).suffix else face.source)}"
        )
        fdir.mkdir(parents=True, exist_ok=True)
        item = {"source": face.source, "true": face.true, "checkpoints": {}}
        for label in labels:
            r = face.results[label]
            files = {}
            for cls, cam in r["maps"].items():
                f = fdir / f"{_slug(label)}__{_slug(cls)}.png"
                Image.fromarray(overlay(face.crop, cam)).save(f)
                files[cls] = str(f.relative_to(out))
            item["checkpoints"][label] = {"predicted": r["predicted"], "confidence": r["confidence"],
                                          "probs": r["probs"], "overlays": files}  # fmt: skip
        index.append(item)
    grid = plot_grid(faces, labels, out / "explain_grid.png", method)
    js = out / "explain.json"
    write_atomic(json.dumps({"method": method, "checkpoints": labels, "faces": index}, indent=1), js)
    return {"grid": grid, "json": js, "overlays": out / "overlays"}


def _is_image_arg(s: str) -> bool:
    from ..io import IMAGE_EXTENSIONS

    p = Path(s)
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        return True
    from ..runtime.files import run_checkpoint

    return p.is_dir() and run_checkpoint(p) is None


def split_args(checkpoints, images) -> tuple[list[str], list[str]]:
    """Checkpoints and image arguments given in any order after ``--checkpoint``: image files (by
    extension) and folders without ``best.pt``/``last.pt`` are images, the rest checkpoints."""
    ck, im = [], list(images or [])
    for c in checkpoints:
        (im if _is_image_arg(c) else ck).append(c)
    return ck, im


def explain(
    checkpoints,
    images=(),
    out_dir="explain",
    method: str = "gradcam",
    target: str = "predicted",
    detect: bool = True,
    dataset: str | None = None,
    split: str = "test",
    data_dir=None,
    limit: int | None = None,
    seed: int = 0,
    margin: float = 0.1,
) -> tuple[list[Face], dict, list[str]]:
    """Load checkpoints, gather faces (files or a dataset sample), explain and write everything.
    Returns ``(faces, files, skipped)``."""
    from ._common import load_checkpoints

    _cam_class(method)  # fail early when grad-cam is missing or the method is unknown
    if not checkpoints:
        raise ConfigError("explain needs at least one checkpoint (--checkpoint)")
    models = load_checkpoints(checkpoints)
    if dataset:
        faces = faces_from_dataset(dataset, split, data_dir, limit or 8, seed, [m for _, m in models])
        skipped = []
    else:
        if not images:
            raise ConfigError("give image files/folders, or --dataset NAME for dataset samples")
        faces, skipped = faces_from_files(images, detect, margin)
        if limit:
            faces = faces[:limit]
    if not faces:
        raise FerlabError("no face to explain: " + ("; ".join(skipped[:3]) or "no image given"))
    explain_faces(faces, models, method, target)
    files = write_explanations(faces, [label for label, _ in models], out_dir, method)
    return faces, files, skipped
