"""``ferlab report``: one self-contained HTML page from a synthetic run folder."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
from PIL import Image

from ferlab.analysis.report import build_report, markdown_to_html
from ferlab.cli import main


def _png(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


def _run(tmp_path):
    run = tmp_path / "myrun"
    run.mkdir()
    lines = ["epoch,lr,train_loss,train_acc,val_loss,val_acc,val_macro_f1"]
    for e in range(1, 6):
        lines.append(
            f"{e},{0.1 / e},{2 - 0.2 * e},{0.3 + 0.05 * e},{1.9 - 0.1 * e},{[0.3, 0.5, 0.62, 0.6, 0.61][e - 1]},0.4"
        )
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    (run / "summary.json").write_text(json.dumps({"epochs_run": 5, "test_acc": 0.61}))
    (run / "config.yaml").write_text("model: {name: fernet_xs}\n")
    ev = run / "eval"
    m = {"n": 100, "accuracy": 0.61, "macro_f1": 0.55, "weighted_f1": 0.6, "ece": 0.03, "tta": "none"}
    ev.mkdir()
    (ev / "test.json").write_text(json.dumps(m))
    (ev / "test.md").write_text(
        "# test report\n\n- images: 100\n\n| class | F1 |\n|---|---:|\n| happy | 0.900 |\n| <sad> | 0.400 |\n"
    )
    _png(ev / "test_confusion.png", 1)
    _png(run / "robustness" / "robustness.png", 2)
    (run / "robustness" / "robustness.json").write_text("{}")
    (run / "robustness" / "robustness.md").write_text(
        "# Robustness\n\n## Buckets\n\n| corruption | bucket | tiny |\n|---|---|---:|\n| rotation | beyond ±30° | 41.00 |\n"
        "\n## rotation (degrees)\n\n| severity | tiny |\n|---:|---:|\n| -45 | 40.00 |\n"
    )
    _png(run / "explain" / "explain_grid.png", 3)
    (run / "explain" / "explain.json").write_text(json.dumps({"method": "gradcam++"}))
    return run


def test_report_sections_and_inlined_images(tmp_path):
    run = _run(tmp_path)
    out = tmp_path / "report.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    page = out.read_text()
    for sec in ('id="summary"', 'id="training"', 'id="evaluation"', 'id="robustness"', 'id="explain"'):
        assert sec in page
    imgs = re.findall(r'<img src="([^"]+)"', page)
    # curves drawn from metrics.csv (no curves.png in the folder), confusion, robustness plot, Grad-CAM grid
    assert len(imgs) == 4
    assert all(s.startswith("data:image/png;base64,") for s in imgs)
    for s in imgs:
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "61.00%" in page and "0.5500" in page  # the evaluation row
    assert "beyond ±30°" in page and "gradcam++" in page
    assert "&lt;sad&gt;" in page and "<sad>" not in page  # markdown is escaped
    assert "<tr class=best><td class=num>3</td>" in page  # the best validation epoch is highlighted
    assert "fernet_xs" in page  # config.yaml
    assert 'class="missing"' not in page  # every part was found


def test_report_default_location_and_missing_parts(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "metrics.csv").write_text(
        "epoch,lr,train_loss,train_acc,val_loss,val_acc\n1,0.1,2.0,0.2,1.9,0.25\n"
    )
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "ferlab robustness --checkpoint RUN" in page and "ferlab explain --checkpoint RUN" in page
    assert "ferlab evaluate --checkpoint RUN" in page
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert build_report(run).startswith("<!DOCTYPE html>")


def test_markdown_subset():
    h = markdown_to_html("# T\n\n- a `x`\n- **b**\n\n| h | n |\n|---|---:|\n| r | 1.5 |\n\ntext\nmore")
    assert "<h2>T</h2>" in h and "<li>a <code>x</code></li>" in h and "<b>b</b>" in h
    assert "<th>h</th>" in h and "<td class=num>1.5</td>" in h and "<p>text more</p>" in h
