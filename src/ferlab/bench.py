"""Benchmarks (``ferlab bench ...``): measured throughput on this machine, never asserted by tests.

``bench_train`` reports, per model: training images/s (forward + backward + optimiser step on real-sized
random batches), the achieved GFLOP/s (training FLOPs from ``torch.utils.flop_counter`` on one step),
the same run's matmul GFLOP/s (the machine's practical limit) and their ratio, and the data pipeline's
images/s (gather + augment of in-memory uint8 crops) beside it. Medians of several timed repeats; the
thread count is explicit because timings on a shared 2-core machine collapse under other load.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        rates.append(2 * n**3 * 10 / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


def _train_step_fn(model, x, y, amp: bool, opt):
    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench_train(
    name: str, batch_size: int = 64, threads: int | None = None, amp: bool = False, channels_last: bool = False,
    steps: int = 5, repeats: int = 3, img_size: int | None = None,
) -> dict:  # fmt: skip
    """Training throughput of one model (see module docstring)."""
    from .models import create_model
    from .transforms import create_transform

    if threads:
        torch.set_num_threads(threads)
    model = create_model(name, img_size=img_size)
    cfg = model.data_config
    x = torch.randn(batch_size, *cfg.input_size)
    y = torch.randint(0, model.num_classes, (batch_size,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    step = _train_step_fn(model, x, y, amp, opt)
    with FlopCounterMode(display=False) as fc:
        step()
    flops = fc.get_total_flops()
    for _ in range(2):
        step()
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(batch_size * steps / (time.perf_counter() - t))
    ips = statistics.median(rates)
    # data pipeline: gather + augment in-memory uint8 faces of the model's input size
    tf = create_transform(cfg, is_training=True)
    h = cfg.input_size[1]
    pool = np.random.default_rng(0).integers(0, 255, (4096, h, h), dtype=np.uint8)
    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    n = 0
    while time.perf_counter() - t < 1.0:
        idx = np.random.default_rng(n).integers(0, len(pool), batch_size)
        tf(pool[idx], generator=g)
        n += batch_size
    loader_ips = n / (time.perf_counter() - t)
    mm = matmul_gflops()
    achieved = flops / batch_size * ips / 1e9
    return {
        "model": name, "threads": torch.get_num_threads(), "amp_bf16": amp, "channels_last": channels_last,
        "batch_size": batch_size, "input": "x".join(map(str, cfg.input_size)),
        "train_img_per_s": ips, "train_gflop_per_img": flops / batch_size / 1e9, "achieved_gflops": achieved,
        "matmul_gflops": mm, "pct_of_matmul": 100 * achieved / mm, "loader_img_per_s": loader_ips,
    }  # fmt: skip


def format_rows(rows: list[dict]) -> str:
    head = "| model | input | threads | bf16 | ch-last | train img/s | GFLOP/img (train) | GFLOP/s | matmul GFLOP/s | % of matmul | loader img/s |"
    out = [head, "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['input']} | {r['threads']} | {r['amp_bf16']} | {r['channels_last']} | "
            f"{r['train_img_per_s']:.0f} | {r['train_gflop_per_img']:.3f} | {r['achieved_gflops']:.1f} | "
            f"{r['matmul_gflops']:.0f} | {r['pct_of_matmul']:.0f}% | {r['loader_img_per_s']:.0f} |"
        )
    return "\n".join(out)
