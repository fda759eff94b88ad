"""The ``ferlab`` command line: thin wrappers around library functions, one module per command group.

Each module (:mod:`~ferlab.cli.data`, :mod:`~ferlab.cli.generate`, :mod:`~ferlab.cli.models`,
:mod:`~ferlab.cli.train`, :mod:`~ferlab.cli.evaluate`, :mod:`~ferlab.cli.predict`, :mod:`~ferlab.cli.bench`,
:mod:`~ferlab.cli.analysis`) holds, for each of its commands, an ``add_<command>(sub)`` that builds the
command's argparse parser beside the ``_cmd_<command>(args)`` handler it calls, and lists them in its
``COMMANDS``; :mod:`~ferlab.cli._args` holds the arguments several commands share, their choices read from
the library's registries. :func:`build_parser` adds the commands in :data:`ORDER`. The rule: handlers parse
nothing themselves and call plain, tested library functions; user errors
(:class:`ferlab.errors.FerlabError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import FerlabError
from . import analysis, bench, data, evaluate, generate, models, predict, train
from .train import format_train_summary

__all__ = ["ORDER", "build_parser", "format_train_summary", "main"]

#: the commands in the order ``ferlab --help`` lists them
ORDER = (
    "datasets",
    "balance",
    "generate",
    "export-data",
    "export",
    "serve",
    "prepare",
    "train",
    "evaluate",
    "ensemble",
    "protocol",
    "bench",
    "predict",
    "robustness",
    "explain",
    "profile",
    "report",
    "zoo",
    "list-models",
)
_MODULES = (data, generate, models, train, evaluate, predict, bench, analysis)


def build_parser() -> argparse.ArgumentParser:
    """The ``ferlab`` parser: top-level options and every command of every module, in :data:`ORDER`."""
    from .. import __version__

    adders = {name: add for m in _MODULES for name, add in m.COMMANDS.items()}
    assert set(adders) == set(ORDER), f"commands without a place in ORDER: {set(adders) ^ set(ORDER)}"
    p = argparse.ArgumentParser(
        prog="ferlab",
        description="Facial expression recognition toolkit: datasets, face preprocessing, models, training, inference.",
    )
    p.add_argument("--version", action="version", version=f"ferlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in ORDER:
        adders[name](sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``ferlab`` with ``argv`` (default: the process's arguments) and return its exit status."""
    import os

    # OpenMP threads that spin while they wait steal the core the detector (ONNX Runtime) or a second process
    # needs; read by the OpenMP runtime when torch loads, so set before any command imports torch
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for stream in (sys.stdout, sys.stderr):  # file names that are not valid UTF-8 print escaped, never crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides after an option (`ferlab zoo train --threads 2 epochs=3`): argparse has already
    # closed the positional list by then, so they come back as unknown; they belong to it
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except FerlabError as e:
        print(f"ferlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
