"""Model complexity on this machine (``ferlab profile``): parameters, FLOPs, peak memory, latency, throughput.

What each number is:

* **params** — trainable parameters (:func:`ferlab.models.profile.count_params`).
* **GFLOPs/img** — one forward pass of one image at the given input, from ``torch.utils.flop_counter``
  (via :func:`ferlab.models.profile.params_and_flops`, on the meta device). torch counts a multiply-add as
  **2 FLOPs**: a convolution is ``2 * Cin/groups * Cout * kh * kw * Hout * Wout``, a linear layer
  ``2 * in * out`` per image; biases, normalisation, activations and pooling are not counted.
* **latency b1** — the median wall time of a forward pass of one image (``torch.inference_mode``), after
  warm-up runs, over ``repeats`` timed runs (fewer if ``max_seconds`` is reached, never fewer than 3).
* **throughput bN** — images per second of forward passes of ``batch`` images (median run, same rules).
* **peak memory** — how much memory one forward pass needs above the loaded model (weights excluded, they
  are given separately as ``weights MB``):

  - on CUDA, ``torch.cuda.max_memory_allocated()`` minus the memory allocated before the pass (tensor
    memory through PyTorch's caching allocator; cuDNN workspaces included, the allocator's cache not);
  - on CPU there is no allocator statistic, and ``tracemalloc`` does not see torch's C++ allocations, so
    the number is the operating system's: the process's resident-set high-water mark (``VmHWM``, reset
    through ``/proc/self/clear_refs`` just before the pass, after a warm-up pass, a ``gc.collect()`` and a
    ``malloc_trim(0)``) minus the resident set before the pass. It includes oneDNN scratch buffers and
    allocator slack that tensor counting misses. Each model is measured in a fresh Python process
    (``isolate=True``) so earlier models leave nothing resident behind. Where ``clear_refs`` cannot be
    written (not Linux) the ``ru_maxrss`` growth is reported instead, a lower bound (``memory_method``).

fp32 is measured as is, bf16 under ``torch.autocast`` (weights stay fp32). On CPUs without native bf16
(no AVX512-BF16/AMX) bf16 autocast is emulated and usually slower than fp32; the table's notes say which.
Timings on a shared machine are only as good as its idle time: run ``ferlab profile --all`` on a quiet one.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

from ..errors import ConfigError, FerlabError
from ..tables import markdown_table
from .timing import time_runs


# -- memory ---------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset this process's peak resident set (Linux >= 4.0); False where it cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    with contextlib.suppress(Exception):  # glibc only; elsewhere there is nothing to trim
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def cpu_peak_extra(fn) -> tuple[int, str]:
    """Bytes of resident memory ``fn()`` needs at its peak above the resident set before it, and how it
    was measured (see the module docstring)."""
    gc.collect()
    _malloc_trim()
    if _reset_hwm():
        base = _status_kb("VmRSS")
        fn()
        peak = _status_kb("VmHWM")
        if base is not None and peak is not None:
            return max(0, peak - base) * 1024, "VmHWM reset"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return max(0, after - before) * scale, "ru_maxrss growth (lower bound)"


def cuda_peak_extra(fn, device) -> tuple[int, str]:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return max(0, torch.cuda.max_memory_allocated(device) - base), "cuda max_memory_allocated"


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def default_devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _measure(model, dev: str, prec: str, shape, batch: int, repeats: int, max_seconds: float) -> dict:
    """Latency (batch 1), throughput (``batch``) and peak memory of one model on one device and precision."""
    from ..runtime.precision import autocast_context

    is_cuda = dev.startswith("cuda")
    sync = (lambda: torch.cuda.synchronize(dev)) if is_cuda else None
    x1 = torch.randn(1, *shape, device=dev)
    xb = torch.randn(batch, *shape, device=dev)

    def run(x):
        with torch.inference_mode(), autocast_context(prec, dev):
            model(x)

    def peak(x):
        return cuda_peak_extra(lambda: run(x), dev) if is_cuda else cpu_peak_extra(lambda: run(x))

    lat = time_runs(lambda: run(x1), repeats, 3, max_seconds, sync)
    thr = time_runs(lambda: run(xb), repeats, 1, max_seconds, sync)
    mem1, method = peak(x1)
    memb, _ = peak(xb)
    return {"latency_ms_b1": 1000 * statistics.median(lat), "latency_runs": len(lat),
            "throughput": batch / statistics.median(thr), "throughput_runs": len(thr),
            "peak_mb_b1": mem1 / 2**20, "peak_mb_batch": memb / 2**20, "memory_method": method}  # fmt: skip


# -- one model ------------------------------------------------------------------------------------------
def profile_model(
    name: str,
    input_size=None,
    batch: int = 64,
    precisions=("fp32", "bf16"),
    devices=None,
    repeats: int = 10,
    max_seconds: float = 20.0,
    threads: int | None = None,
    num_classes: int = 7,
) -> list[dict]:
    """Rows (one per device and precision) of :mod:`this module <ferlab.analysis.complexity>`'s numbers for
    one registered model; ``input_size`` is ``(H, W)`` (default: the model's native size)."""
    from ..models import create_model, model_info
    from ..models.profile import params_and_flops
    from ..runtime.precision import cpu_has_fast_bf16

    if threads:
        torch.set_num_threads(int(threads))
    info = model_info(name)
    c = info.data.input_size[0]
    h, w = input_size or info.data.input_size[1:]
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    for p in precisions:
        if p not in ("fp32", "bf16"):
            raise ConfigError(f"unknown precision {p!r}; valid: fp32, bf16")
    try:
        params, flops = params_and_flops(name, num_classes, input_size=(c, h, w))
    except Exception as e:  # noqa: BLE001 - a model that cannot take this input size
        raise ConfigError(
            f"{name}: cannot run a {c}x{h}x{w} input ({str(e).splitlines()[0][:160]})"
        ) from None
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes, img_size=h).eval()
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    rows = []
    for dev in devices or default_devices():
        model.to(dev)
        is_cuda = dev.startswith("cuda")
        for prec in precisions:
            if prec == "bf16" and is_cuda and not torch.cuda.is_bf16_supported():
                continue
            m = _measure(model, dev, prec, (c, h, w), batch, repeats, max_seconds)
            rows.append({
                "model": name, "input": f"{c}x{h}x{w}", "params": params, "gflops": flops / 1e9,
                "weights_mb": weights / 2**20, "device": dev if not is_cuda else torch.cuda.get_device_name(dev),
                "precision": prec, "batch": batch, **m,
                "threads": torch.get_num_threads(),
                "native_bf16": bool(torch.cuda.is_bf16_supported()) if is_cuda else cpu_has_fast_bf16(),
            })  # fmt: skip
        model.to("cpu")
    return rows


# -- many models ----------------------------------------------------------------------------------------
def _child_env() -> dict:
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def profile_models(names, isolate: bool = True, progress: bool = False, **kwargs) -> list[dict]:
    """:func:`profile_model` for each name; with ``isolate`` each model runs in a fresh Python process (so
    peak memory is not hidden by memory an earlier model left resident). A model that fails gives a row
    with ``error`` instead of stopping the others."""
    rows = []
    for n in names:
        t = time.perf_counter()
        if not isolate:
            try:
                got = profile_model(n, **kwargs)
            except FerlabError as e:
                got = [{"model": n, "error": str(e)}]
        else:
            spec = json.dumps({"name": n, **kwargs})
            r = subprocess.run([sys.executable, "-m", "ferlab.analysis.complexity", spec],
                               capture_output=True, text=True, env=_child_env())  # fmt: skip
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{") or ln.startswith("[")]
            if r.returncode == 0 and lines:
                got = json.loads(lines[-1])
            else:
                err = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
                got = [{"model": n, "error": err[:300]}]
        rows += got
        if progress:
            print(f"{n}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    return rows


def format_table(rows: list[dict]) -> str:
    """The Markdown table, with the machine and the measurement conventions as notes under it."""
    ok = [r for r in rows if "error" not in r]
    batch = ok[0]["batch"] if ok else 64
    head = [
        "model",
        "input",
        "params",
        "GFLOPs/img",
        "weights MB",
        "device",
        "precision",
        "latency b1 (ms)",
        f"throughput b{batch} (img/s)",
        "peak mem b1 (MB)",
        f"peak mem b{batch} (MB)",
    ]
    cells = [[r["model"], f"error: {r['error']}"] if "error" in r else
             [r["model"], r["input"], f"{r['params']:,}", f"{r['gflops']:.3f}", f"{r['weights_mb']:.1f}", r["device"],
              r["precision"], f"{r['latency_ms_b1']:.2f}", f"{r['throughput']:.1f}", f"{r['peak_mb_b1']:.1f}",
              f"{r['peak_mb_batch']:.1f}"] for r in rows]  # fmt: skip
    lines = markdown_table(head, cells, "llrrrllrrrr").split("\n")
    cpu_rows = [r for r in ok if r["device"] == "cpu"]
    methods = sorted({r["memory_method"] for r in ok})
    notes = [
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
        f"{cpu_rows[0]['threads'] if cpu_rows else torch.get_num_threads()} torch threads"
        + (f"; CPU native bf16: {'yes' if cpu_rows[0]['native_bf16'] else 'no (bf16 autocast is emulated)'}" if cpu_rows else "")
        + ".",
        "FLOPs: torch.utils.flop_counter, one multiply-add = 2 FLOPs (conv: 2·Cin/groups·Cout·k·k·Hout·Wout, "
        "linear: 2·in·out per image); biases, norms, activations and pooling not counted.",
        "Latency: median forward time of one image after warm-up (torch.inference_mode); throughput: images/s "
        f"of batch-{batch} forwards (median run).",
        "Peak memory: memory one forward needs above the loaded model (weights excluded). "
        f"Method: {', '.join(methods) or '-'} — on CPU the resident-set high-water mark (VmHWM, reset just "
        "before the pass) minus the resident set before it, each model in a fresh process; on CUDA "
        "torch.cuda.max_memory_allocated minus the allocation before the pass.",
    ]  # fmt: skip
    return "\n".join(lines + notes)


def _child(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    name = spec.pop("name")
    try:
        rows = profile_model(name, **spec)
    except FerlabError as e:
        rows = [{"model": name, "error": str(e)}]
    print(json.dumps(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
