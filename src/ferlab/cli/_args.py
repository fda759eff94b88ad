"""Arguments that several ``ferlab`` commands share, written once.

Choices come from the library's registries (imported when a parser is built, never when ``ferlab.cli`` is
imported, so that ``import ferlab.cli`` stays free of torch): what the library accepts is what the help shows.
"""

from __future__ import annotations

DATA_HELP = "data root (default: $FERLAB_DATA)"
THREADS_HELP = "CPU threads for torch, ONNX Runtime and OpenCV (default: the cores this process may use, or $FERLAB_THREADS)"


def add_data_dir(s, help: str = DATA_HELP) -> None:
    """``--data-dir``: the data root."""
    s.add_argument("--data-dir", help=help)


def add_threads(s, help: str = THREADS_HELP) -> None:
    """``--threads N``: the CPU thread budget of one run."""
    s.add_argument("--threads", type=int, help=help)


def add_overwrite(s, help: str = "replace --out if it exists") -> None:
    """``--overwrite``: replace an output that exists (commands refuse to otherwise)."""
    s.add_argument("--overwrite", action="store_true", help=help)


def precision_choices(default: str | None = None, exclude: tuple[str, ...] = ()) -> list[str]:
    """The precisions of :data:`ferlab.runtime.precision.PRECISIONS` less ``exclude``, ``default`` first."""
    from ..runtime.precision import PRECISIONS

    allowed = [p for p in PRECISIONS if p not in exclude]
    return [default, *(p for p in allowed if p != default)] if default in allowed else allowed


def add_precision(
    s, default: str = "fp32", exclude: tuple[str, ...] = (), many: bool = False, help: str | None = None
) -> None:
    """``--precision``: one of the registry's precisions (several with ``many``, default: all allowed)."""
    choices = precision_choices(None if many else default, exclude)
    if many:
        s.add_argument("--precision", nargs="+", choices=choices, default=list(choices), help=help)
    else:
        s.add_argument("--precision", choices=choices, default=default, help=help)


def add_tta(s) -> None:
    """``--tta``: test-time augmentation, from :data:`ferlab.runtime.predict.TTA`."""
    from ..runtime.predict import TTA

    s.add_argument("--tta", choices=list(TTA), default="none")


def add_backend(s, many: bool = False, help: str | None = None) -> None:
    """``--backend``: inference backends of :data:`ferlab.infer.recognizer.BACKENDS` (several with ``many``)."""
    from ..infer.recognizer import BACKENDS

    if many:
        s.add_argument("--backend", nargs="+", default=None, choices=list(BACKENDS), help=help)
    else:
        s.add_argument("--backend", choices=list(BACKENDS), default="torch", help=help)


def shipped_names() -> str:
    """The shipped model names (:data:`ferlab.runtime.weights.PRETRAINED`), comma separated, for help texts."""
    from ..runtime.weights import PRETRAINED

    return ", ".join(PRETRAINED)


def save_output(text: str, out, overwrite: bool = False, extra: dict | None = None) -> list:
    """Write a command's table (and ``extra`` files beside it: suffix -> text) atomically; an existing file is
    replaced only with ``--overwrite`` (checked for every file before anything is written)."""
    from pathlib import Path

    from ..errors import FerlabError
    from ..io import write_atomic

    out = Path(out)
    files = {out: text if text.endswith("\n") else text + "\n"}
    files.update({out.with_suffix(sfx): body for sfx, body in (extra or {}).items()})
    for f in files:
        if f.exists() and not overwrite:
            raise FerlabError(f"{f} exists; pass --overwrite to replace it")
    return [write_atomic(body, f) for f, body in files.items()]


def detector_names() -> str:
    """The registered face detectors, for help texts (a spec may add options after a colon)."""
    from ..faces.detect import DETECTORS

    return ", ".join(DETECTORS)


def dataset_help(default: str | None = None) -> str:
    """``--dataset`` help: the registered names and the path prefixes."""
    from ..data.registry import DATASETS, PREFIXES

    names = ", ".join([*DATASETS, *(f"{p}PATH" for p in PREFIXES)])
    return f"dataset: {names}" + (f" (default {default})" if default else "")
