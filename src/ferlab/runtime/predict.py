"""The one prediction loop: uint8 face crops -> the model's eval transform -> scorer -> probabilities.

Used by the Trainer's validation, ``ferlab evaluate``, ensembles, the ONNX Runtime models and the
``Recognizer``, so a face is scored the same way everywhere. Test-time augmentation: ``tta='flip'``
(average with the mirrored face) or ``'tencrop'`` (four corners + centre at 90 % of the side, resized
back, and their mirrors).

A *scorer* is what the loop runs: a ``torch.nn.Module`` (run under the precision policy), any object with
``logits(x: np.ndarray) -> np.ndarray`` and a ``data_config`` (an ONNX Runtime model), or an ensemble
(``is_ensemble = True``), which feeds every member through this loop with its own transform and combines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError
from .precision import autocast_context, resolve_precision

if TYPE_CHECKING:  # annotations only; torch is imported where it runs
    import torch

TTA = ("none", "flip", "tencrop")


def tta_views(x: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The views of a normalised batch averaged by test-time augmentation."""
    import torch.nn.functional as F

    if tta in (None, "none"):
        return [x]
    if tta == "flip":
        return [x, x.flip(-1)]
    if tta == "tencrop":
        h, w = x.shape[-2:]
        ch, cw = round(h * 0.9), round(w * 0.9)
        offs = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)]
        crops = [
            F.interpolate(x[..., i : i + ch, j : j + cw], size=(h, w), mode="bilinear", align_corners=False)
            for i, j in offs
        ]
        return crops + [c.flip(-1) for c in crops]
    raise ConfigError(f"unknown TTA {tta!r}; valid: {', '.join(TTA)}")


def predict_probs(
    model,
    images,
    transform=None,
    batch_size: int = 256,
    tta: str = "none",
    device: str = "cpu",
    progress: bool = False,
    precision: str = "fp32",
    channels_last: bool = False,
) -> np.ndarray:
    """Class probabilities ``[N, C]`` for uint8 face crops (array ``[N,H,W(,3)]``).

    ``precision='bf16'`` (or ``'auto'``) runs the model under autocast; with ``channels_last`` the batch
    is laid out NHWC (convert the model too: ``model.to(memory_format=torch.channels_last)``). Both are
    the CPU fast path; fp32 is the exact reference.
    """
    import torch
    import torch.nn.functional as F

    from ..transforms.factory import create_transform

    with torch.no_grad():  # inference only: no autograd graph
        from tqdm.auto import tqdm

        if getattr(model, "is_ensemble", False):  # members need their own transforms (runtime.ensemble)
            return model.predict_probs(images, tta, batch_size, device, progress, precision, channels_last)
        is_torch = isinstance(model, torch.nn.Module)
        if not is_torch and not hasattr(model, "logits"):
            raise ConfigError(f"{type(model).__name__} is not a scorer (a torch module, or has .logits(x))")
        precision = resolve_precision(precision, device) if is_torch else "fp32"
        transform = transform or create_transform(model.data_config, is_training=False)
        if is_torch:
            model.eval()
        out = []
        rng = range(0, len(images), int(batch_size))
        for i in tqdm(rng, desc="predict", disable=not progress, leave=False):
            x = transform(images[i : i + int(batch_size)])
            if is_torch:
                x = x.to(device)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast_context(precision, device):
                    p = torch.stack([F.softmax(model(v).float(), -1) for v in tta_views(x, tta)]).mean(0)
            else:  # ONNX Runtime: numpy in, numpy out (fp32, or the int8 graph's own arithmetic)
                views = [F.softmax(torch.from_numpy(model.logits(v.numpy())), -1) for v in tta_views(x, tta)]
                p = torch.stack(views).mean(0)
            out.append(p.cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, model.num_classes), np.float32)
