"""Parameter and FLOP counts for the model zoo (torch's own flop counter)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..tables import markdown_table
from ._registry import create_model, model_info


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: torch.nn.Module, input_size, batch: int = 1) -> int:
    """FLOPs of one forward pass (a multiply-add counts 2), from ``torch.utils.flop_counter``."""
    model.eval()
    p = next(model.parameters(), None)
    x = torch.zeros(batch, *input_size, device=p.device if p is not None else "cpu")
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    return int(fc.get_total_flops())


def params_and_flops(name: str, num_classes: int = 7, input_size=None, **kwargs) -> tuple[int, int]:
    """Parameter count and forward FLOPs at the native (or given) input size, computed on the meta device
    (no memory is allocated and nothing runs, so even 358 M-parameter models take a second or two)."""
    info = model_info(name)
    size = input_size or info.data.input_size
    try:
        with torch.device("meta"):
            m = create_model(name, num_classes=num_classes, img_size=size[1], **kwargs)
            return count_params(m), count_flops(m, size)
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel: count on the CPU instead
        m = create_model(name, num_classes=num_classes, img_size=size[1], **kwargs)
        return count_params(m), count_flops(m, size)


def model_table(names, flops: bool = True, num_classes: int = 7) -> str:
    """A Markdown table: name, paper, params, FLOPs at the native input, input size and colour."""
    rows = []
    for n in names:
        info = model_info(n)
        p, fl = params_and_flops(n, num_classes)
        f = f"{fl / 1e9:.3f}" if flops else "-"
        c, h, w = info.data.input_size
        col = info.data.color + ("+lbp" if info.data.lbp else "")
        rows.append([n, info.paper, f"{p:,}", f, f"{c}x{h}x{w}", col])
    return markdown_table(["model", "paper", "params", "GFLOPs", "input", "colour"], rows, "llrrll")
