"""Pair ONNX Runtime's two ways of using several threads on one batch, in one process, interleaved.

    python tools/bench_onnx_split.py --model fast default --backend onnx-int8 --threads 2

For each shipped model: one thread; ``threads`` intra-op threads in one run (the session's own parallelism);
and ``OnnxModel``'s split (the batch cut into one part per thread, each run at once on a one-thread session).
Prints faces/s and faces per CPU-second (process CPU time), medians over interleaved rounds. Pause any other
job first: on two shared cores a second process changes every figure.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ferlab.hardware import cpu_info
from ferlab.infer.onnx import OnnxModel
from ferlab.runtime.weights import load_default, pretrained_int8_path


def pair(name: str, backend: str, threads: int, faces: int, rounds: int) -> None:
    """One model: the three ways, interleaved, printed as medians."""
    if backend == "onnx-int8":
        path = pretrained_int8_path(name)
        if path is None:
            raise SystemExit(f"{name!r} has no shipped INT8 file")
        one, many = OnnxModel.from_file(path, threads=1), OnnxModel.from_file(path, threads=threads)
    else:
        one = OnnxModel.from_model(load_default(name), threads=1)
        many = OnnxModel.from_model(load_default(name), threads=threads)
    x = np.random.default_rng(0).random((faces, *many.data_config.input_size), dtype=np.float32)
    ways = {
        "1 thread": lambda: one.logits(x),
        f"{threads} intra-op threads": lambda: many.session.run(None, {many._input: x}),
        f"split {threads} x 1 thread": lambda: many._split_logits(x),
    }
    for fn in ways.values():  # warm-up (and the split session's creation)
        fn()
    rates: dict[str, list] = {k: [] for k in ways}
    for _ in range(rounds):
        for k, fn in ways.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            rates[k].append((faces / (time.perf_counter() - t), faces / (time.process_time() - c)))
    for k, v in rates.items():
        wall, cpu = np.median(np.array(v), axis=0)
        print(f"{name} {backend:9s} {k:26s} {wall:8.0f} faces/s {cpu:8.0f} faces per CPU-s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["fast", "default"])
    ap.add_argument("--backend", choices=["onnx", "onnx-int8"], default="onnx-int8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--faces", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"CPU: {cpu_info().summary()}")
    for name in args.model:
        pair(name, args.backend, args.threads, args.faces, args.rounds)


if __name__ == "__main__":
    main()
