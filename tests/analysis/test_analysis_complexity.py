"""``ferlab profile``: FLOP convention against analytic counts, the memory probe, the Markdown table."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn

from ferlab.analysis.complexity import cpu_peak_extra, profile_model
from ferlab.analysis.timing import time_runs
from ferlab.cli import main
from ferlab.models.profile import count_flops


@pytest.mark.parametrize(
    "cin,cout,k,stride,pad,hw", [(3, 8, 3, 1, 1, 16), (16, 32, 5, 2, 0, 31), (1, 4, 1, 1, 0, 7)]
)
def test_conv_flops_are_two_per_multiply_add(cin, cout, k, stride, pad, hw):
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad)
    hout = (hw + 2 * pad - k) // stride + 1
    analytic = 2 * cin * cout * k * k * hout * hout  # per image; the bias is not counted
    assert count_flops(conv, (cin, hw, hw)) == analytic
    assert count_flops(conv, (cin, hw, hw), batch=3) == 3 * analytic


def test_grouped_conv_and_linear_flops():
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert count_flops(dw, (8, 10, 10)) == 2 * (8 // 8) * 8 * 9 * 10 * 10
    fc = nn.Linear(128, 10)
    assert count_flops(fc, (128,)) == 2 * 128 * 10
    assert count_flops(fc, (128,), batch=5) == 5 * 2 * 128 * 10


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="resident-set probe is Linux's /proc")
def test_cpu_peak_memory_sees_a_temporary_buffer():
    def work():
        t = torch.empty(64 * 2**20, dtype=torch.uint8)
        t.fill_(1)  # touch every page so it becomes resident
        del t

    extra, method = cpu_peak_extra(work)
    assert method == "VmHWM reset"
    assert 60 * 2**20 <= extra <= 200 * 2**20


def test_time_runs_counts_and_caps():
    calls = []
    times = time_runs(lambda: calls.append(1), repeats=5, warmup=2, max_seconds=10)
    assert len(times) == 5 and len(calls) == 7
    slow = time_runs(lambda: __import__("time").sleep(0.02), repeats=100, warmup=0, max_seconds=0.05)
    assert 3 <= len(slow) < 10


def test_profile_model_row():
    (row,) = profile_model(
        "smallcnn_tiny", batch=4, precisions=("fp32",), devices=["cpu"], repeats=3, max_seconds=1
    )
    assert row["params"] == 74_159 and row["input"] == "1x48x48"
    assert row["gflops"] > 0 and row["latency_ms_b1"] > 0 and row["throughput"] > 0
    assert row["peak_mb_b1"] >= 0 and row["peak_mb_batch"] >= 0


def test_cli_profile_two_models_markdown(tmp_path):
    out = tmp_path / "docs" / "profile.md"
    rc = main(["profile", "--model", "smallcnn_tiny", "fernet_xs", "--batch", "4", "--repeats", "3",
               "--max-seconds", "1", "--precision", "fp32", "--out", str(out)])  # fmt: skip
    assert rc == 0
    text = out.read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| model | input | params | GFLOPs/img")
    assert "throughput b4" in lines[0]
    body = lines[1:]
    assert [ln.split("|")[1].strip() for ln in body] == ["smallcnn_tiny", "fernet_xs"]
    assert "error" not in text
    assert "one multiply-add = 2 FLOPs" in text
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["model"] for r in rows] == ["smallcnn_tiny", "fernet_xs"]
    assert rows[0]["memory_method"] == "VmHWM reset" or not sys.platform.startswith("linux")


def test_cli_profile_needs_a_model(capsys):
    assert main(["profile"]) == 2
    assert "--model" in capsys.readouterr().err
