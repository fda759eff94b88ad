"""Parameter and FLOP counts for the model zoo (torch's own flop counter)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from ._registry import create_model, model_info


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: torch.nn.Module, input_size, batch: int = 1) -> int:
    """FLOPs of one forward pass (a multiply-add counts 2), from ``torch.utils.flop_counter``."""
    model.eval()
    x = torch.zeros(batch, *input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return int(fc.get_total_flops())


def human(n: float, unit: str = "") -> str:
    for k, s in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= k:
            return f"{n / k:.2f} {s}{unit}"
    return f"{n:.0f} {unit}".strip()


def model_table(names, flops: bool = True, num_classes: int = 7) -> str:
    """A Markdown table: name, paper, params, FLOPs at the native input, input size and colour."""
    rows = ["| model | paper | params | GFLOPs | input | colour |", "|---|---|---:|---:|---|---|"]
    for n in names:
        info = model_info(n)
        m = create_model(n, num_classes=num_classes)
        p = count_params(m)
        f = f"{count_flops(m, info.data.input_size) / 1e9:.3f}" if flops else "-"
        c, h, w = info.data.input_size
        col = info.data.color + ("+lbp" if info.data.lbp else "")
        rows.append(f"| {n} | {info.paper} | {p:,} | {f} | {c}x{h}x{w} | {col} |")
        del m
    return "\n".join(rows)
