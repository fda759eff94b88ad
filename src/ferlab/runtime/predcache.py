"""A cache of class probabilities addressed by content: the same weights on the same crops are scored once.

The zoo table, the ensemble study and repeated reports score the same finished models on the same
FER2013 splits again and again; on a 2-core CPU the big paper models take minutes per split. The key of a
cache entry is a SHA-256 over everything the probabilities depend on: the model's class, name, keyword
arguments, data config and classes, every tensor of its ``state_dict`` (names, dtypes, shapes, bytes), the
code that computes them (the source files of every ferlab class among the model's modules, of the transform
factory and of the prediction loop; the versions of ferlab, torch and timm), the crops (shape, dtype, bytes),
the test-time augmentation, the resolved precision, the device and the layout. So an entry can never be
served for other weights, other images or changed code, and a retrained model misses by itself; stale
entries are only disk (``rm -r`` the folder to clear it). Entries are ``.npz`` files written atomically,
loaded without pickle. Models that are not torch modules (ONNX Runtime sessions) are not cached.

The seconds a computation took are kept with its CPU and thread count; a hit returns them only on the same
CPU and thread count (else NaN), so a report never passes off another machine's timing as its own.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

CACHE_VERSION = 1


def _update_array(h, a: np.ndarray) -> None:
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a.reshape(-1).view(np.uint8)))


def _code_fingerprint(model) -> str:
    """SHA-256 of the code the probabilities depend on: ferlab's source files among the model's module
    classes, the transform factory and the prediction loop, and the library versions."""
    import inspect

    import timm
    import torch

    from .._version import __version__
    from ..transforms import factory
    from . import predict

    files = {inspect.getsourcefile(factory), inspect.getsourcefile(predict)}
    for m in model.modules():
        for cls in type(m).__mro__:
            if cls.__module__.split(".")[0] == "ferlab":
                files.add(inspect.getsourcefile(cls))
    h = hashlib.sha256(f"{__version__} {torch.__version__} {timm.__version__}".encode())
    for f in sorted(x for x in files if x):
        h.update(Path(f).name.encode())
        h.update(Path(f).read_bytes())
    return h.hexdigest()


def model_fingerprint(model) -> str | None:
    """SHA-256 of a torch model's description and weights (None for models that are not torch modules)."""
    import torch

    if not isinstance(model, torch.nn.Module):
        return None
    h = hashlib.sha256(f"ferlab-probs-v{CACHE_VERSION}".encode())
    desc = {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "name": getattr(model, "model_name", None),
        "kwargs": getattr(model, "model_kwargs", None),
        "data_config": repr(getattr(model, "data_config", None)),
        "classes": list(getattr(model, "classes", None) or ()),
    }
    h.update(json.dumps(desc, sort_keys=True, default=str).encode())
    h.update(_code_fingerprint(model).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        if not isinstance(t, torch.Tensor):  # a module's non-tensor extra state
            h.update(repr(t).encode())
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def probs_key(model, images, **settings) -> str | None:
    """The cache key of ``model`` on ``images`` under ``settings`` (tta, precision, ...); None: not cacheable."""
    fp = model_fingerprint(model)
    if fp is None:
        return None
    h = hashlib.sha256(fp.encode())
    _update_array(h, np.asarray(images))
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def cached_predict_probs(
    model,
    images,
    cache_dir: str | Path | None,
    tta: str = "none",
    batch_size: int = 256,
    device: str = "cpu",
    progress: bool = False,
    precision: str = "fp32",
    channels_last: bool = False,
) -> tuple[np.ndarray, float, bool]:
    """:func:`ferlab.runtime.predict.predict_probs` through the cache in ``cache_dir`` (None: no cache), with
    the model's own eval transform. Returns ``(probs [N, C], seconds, hit)``: on a hit the seconds are those
    the original computation took if it ran on this CPU with this many threads, else NaN (not measured here)."""
    from ..io import atomic_path
    from .precision import resolve_precision
    from .predict import predict_probs

    def compute():
        t = time.perf_counter()
        p = predict_probs(model, images, None, batch_size, tta, device, progress, precision, channels_last)
        return p, time.perf_counter() - t

    key = None
    if cache_dir is not None:
        import torch

        prec = resolve_precision(precision, device) if isinstance(model, torch.nn.Module) else "fp32"
        key = probs_key(
            model, images, tta=tta, precision=prec, device=str(device), channels_last=channels_last
        )
    if key is None:
        return (*compute(), False)
    path = Path(cache_dir) / f"{key[:40]}.npz"
    where = _where()
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == key and z["probs"].shape[0] == len(images):
                    secs = float(z["seconds"]) if str(z["where"]) == where else float("nan")
                    return z["probs"], secs, True
        except (OSError, ValueError, KeyError):
            pass  # a damaged entry is recomputed and replaced
    probs, secs = compute()
    with atomic_path(path, keep_suffix=True) as tmp:
        np.savez(tmp, probs=probs, seconds=np.float64(secs), key=np.str_(key), where=np.str_(where))
    return probs, secs, False


def _where() -> str:
    """The CPU and torch thread count a timing belongs to."""
    import torch

    from ..hardware import cpu_info

    return f"{cpu_info().summary()} | {torch.get_num_threads()} threads"
