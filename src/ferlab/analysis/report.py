"""One self-contained HTML page of a run (``ferlab report RUN_DIR``).

Gathers what the other commands wrote into a run folder — ``summary.json`` and ``config.yaml``, the
training curves (``curves.png``, drawn from ``metrics.csv`` when missing) and the per-epoch metrics,
evaluation reports (``eval*/<stem>.json|.md`` and ``<stem>_confusion.png``), robustness results
(``robustness*/robustness.md|.png``, from ``ferlab robustness --out RUN/robustness``) and Grad-CAM grids
(``explain*/explain_grid.png``, from ``ferlab explain --out RUN/explain``) — into one HTML file with every
image inlined as base64, so it can be mailed or archived alone. Missing parts are listed with the command
that makes them.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import re
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError
from ..io import write_atomic

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #bbb;margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em}
th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#e6f4e6}img{max-width:100%;height:auto;border:1px solid #ddd}
.grid{display:flex;flex-wrap:wrap;gap:1em}.grid figure{margin:0;flex:1 1 320px;max-width:540px}
figcaption{font-size:.85em;color:#555}.missing{color:#777;font-style:italic}
pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.85em}details{margin:.6em 0}summary{cursor:pointer}
nav a{margin-right:1em}
"""

MAIN_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1", "epoch_time")


def img_tag(path: str | Path, alt: str = "") -> str:
    """An ``<img>`` with the PNG/JPEG inlined as a base64 data URI."""
    p = Path(path)
    mime = "image/jpeg" if p.suffix.lower() in (".jpg", ".jpeg") else "image/png"
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    return f'<img src="data:{mime};base64,{data}" alt="{html.escape(alt or p.name)}">'


def figure(path: Path, caption: str) -> str:
    return f"<figure>{img_tag(path, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)


def _cell(c: str, tag: str) -> str:
    num = re.fullmatch(r"[-+]?[\d,.]+%?", c.strip() or "x") is not None
    return f"<{tag}{' class=num' if num and tag == 'td' else ''}>{_inline(c.strip())}</{tag}>"


def markdown_to_html(md: str, shift: int = 1) -> str:
    """The Markdown subset ferlab writes: headings (shifted down ``shift`` levels), bullet lists, pipe
    tables, paragraphs, ``code`` and **bold**. Everything is HTML-escaped."""
    out, lines, i = [], md.splitlines(), 0
    while i < len(lines):
        ln = lines[i].rstrip()
        if not ln.strip():
            i += 1
            continue
        m = re.match(r"(#{1,6})\s+(.*)", ln)
        if m:
            lvl = min(6, len(m.group(1)) + shift)
            out.append(f"<h{lvl}>{_inline(m.group(2))}</h{lvl}>")
            i += 1
        elif ln.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(lines[i].strip().strip("|").split("|"))
                i += 1
            has_head = len(rows) > 1 and all(re.fullmatch(r"\s*:?-{2,}:?\s*", c) for c in rows[1])
            body = rows[2:] if has_head else rows
            t = ["<table>"]
            if has_head:
                t.append("<tr>" + "".join(_cell(c, "th") for c in rows[0]) + "</tr>")
            t += ["<tr>" + "".join(_cell(c, "td") for c in r) + "</tr>" for r in body]
            out.append("".join(t) + "</table>")
        elif re.match(r"\s*[-*]\s+", ln):
            items = []
            while i < len(lines) and re.match(r"\s*[-*]\s+", lines[i]):
                item = re.sub(r"^\s*[-*]\s+", "", lines[i])
                items.append(f"<li>{_inline(item)}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"(#|\s*\||\s*[-*]\s)", lines[i]):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


def _fmt(v: str) -> str:
    try:
        f = float(v)
    except ValueError:
        return v
    if f.is_integer() and abs(f) < 1e6 and "." not in v:
        return str(int(f))
    return f"{f:.4g}" if abs(f) < 1e-2 or abs(f) >= 1e4 else f"{f:.4f}"


def _metrics_section(run: Path) -> str:
    csv_path = run / "metrics.csv"
    curves = run / "curves.png"
    parts = []
    tmp = None
    if not curves.is_file() and csv_path.is_file():
        from ..plots import plot_curves

        tmp = Path(tempfile.mkdtemp()) / "curves.png"
        try:
            curves = plot_curves(csv_path, tmp)
        except (KeyError, ValueError):
            curves = None
    if curves is not None and Path(curves).is_file():
        parts.append(figure(Path(curves), "loss, accuracy and learning rate per epoch"))
    if tmp is not None and tmp.is_file():
        tmp.unlink()
        tmp.parent.rmdir()
    if not csv_path.is_file():
        return "\n".join(parts) or '<p class="missing">no metrics.csv or curves.png in this run folder</p>'
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return "\n".join([*parts, '<p class="missing">metrics.csv is empty</p>'])
    cols = [c for c in MAIN_COLUMNS if c in rows[0]] or list(rows[0])[:8]
    best = None
    if "val_acc" in rows[0]:
        vals = [(float(r["val_acc"]), k) for k, r in enumerate(rows) if r.get("val_acc") not in (None, "")]
        best = max(vals)[1] if vals else None

    def table(idx) -> str:
        head = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
        body = "".join(
            f"<tr{' class=best' if k == best else ''}>"
            + "".join(f"<td class=num>{html.escape(_fmt(rows[k].get(c, '')))}</td>" for c in cols)
            + "</tr>"
            for k in idx
        )
        return f"<table>{head}{body}</table>"

    key = sorted({best, len(rows) - 1} - {None})
    parts.append(f"<p>{len(rows)} epochs; best validation accuracy highlighted.</p>" + table(key))
    parts.append(
        f"<details><summary>every epoch ({len(rows)} rows, main columns)</summary>{table(range(len(rows)))}</details>"
    )
    return "\n".join(parts)


def _eval_section(run: Path) -> str:
    folders = sorted(p for p in run.iterdir() if p.is_dir() and p.name.startswith("eval"))
    reports = []
    for d in folders:
        for js in sorted(d.glob("*.json")):
            try:
                m = json.loads(js.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(m, dict) and "accuracy" in m:
                reports.append((d, js.stem, m))
    if not reports:
        return '<p class="missing">no evaluation reports (eval*/*.json): run <code>ferlab evaluate --checkpoint RUN</code></p>'
    head = "<tr><th>report</th><th>images</th><th>accuracy</th><th>macro F1</th><th>weighted F1</th><th>ECE</th><th>TTA</th></tr>"
    body = ""
    for d, stem, m in reports:

        def g(k, pct=False, m=m):
            v = m.get(k)
            return "-" if v is None else (f"{100 * v:.2f}%" if pct else f"{v:.4f}")

        body += (f"<tr><td>{html.escape(d.name)}/{html.escape(stem)}</td><td class=num>{m.get('n', '-')}</td>"
                 f"<td class=num>{g('accuracy', True)}</td><td class=num>{g('macro_f1')}</td>"
                 f"<td class=num>{g('weighted_f1')}</td><td class=num>{g('ece')}</td>"
                 f"<td>{html.escape(str(m.get('tta', 'none')))}</td></tr>")  # fmt: skip
    parts = [f"<table>{head}{body}</table>"]
    figs = []
    for d, stem, _ in reports:
        png = d / f"{stem}_confusion.png"
        if png.is_file():
            figs.append(figure(png, f"{d.name}/{stem}: confusion matrix (row-normalised)"))
    if figs:
        parts.append('<div class="grid">' + "".join(figs) + "</div>")
    for d, stem, _ in reports:
        md = d / f"{stem}.md"
        if md.is_file():
            parts.append(f"<details><summary>{html.escape(d.name)}/{html.escape(stem)}.md: per-class table</summary>"
                         f"{markdown_to_html(md.read_text(), shift=2)}</details>")  # fmt: skip
    return "\n".join(parts)


def _robustness_section(run: Path) -> str:
    folders = sorted(p for p in run.iterdir() if p.is_dir() and (p / "robustness.json").is_file())
    folders += sorted(
        p for p in run.iterdir() if p.is_dir() and p.name.startswith("robustness") and p not in folders
    )
    parts = []
    for d in folders:
        if len(folders) > 1:
            parts.append(f"<h3>{html.escape(d.name)}</h3>")
        if (d / "robustness.png").is_file():
            parts.append(figure(d / "robustness.png", "accuracy against corruption severity (grey: clean)"))
        md = d / "robustness.md"
        if md.is_file():
            text = md.read_text()
            cut = text.find("\n## ", text.find("## Buckets") + 1) if "## Buckets" in text else -1
            head, rest = (text, "") if cut < 0 else (text[:cut], text[cut:])
            parts.append(markdown_to_html(head, shift=2))
            if rest:
                parts.append(
                    f"<details><summary>accuracy per severity</summary>{markdown_to_html(rest, shift=2)}</details>"
                )
    if not parts:
        return ('<p class="missing">no robustness results: run <code>ferlab robustness --checkpoint RUN '
                "--out RUN/robustness</code></p>")  # fmt: skip
    return "\n".join(parts)


def _explain_section(run: Path) -> str:
    grids = sorted(run.glob("explain*/*grid*.png"))
    parts = []
    for g in grids:
        meta = g.parent / "explain.json"
        method = ""
        if meta.is_file():
            try:
                method = json.loads(meta.read_text()).get("method", "")
            except ValueError:
                method = ""
        parts.append(
            figure(
                g,
                f"{g.parent.name}: {method or 'CAM'} — rows: faces; columns: the face, then each checkpoint",
            )
        )
    if not parts:
        return ('<p class="missing">no Grad-CAM grid: run <code>ferlab explain --checkpoint RUN --dataset fer2013 '
                "--out RUN/explain</code></p>")  # fmt: skip
    return "\n".join(parts)


def _summary_section(run: Path) -> str:
    parts = []
    s = run / "summary.json"
    if s.is_file():
        try:
            d = json.loads(s.read_text())
        except ValueError:
            d = None
        if isinstance(d, dict):
            rows = "".join(
                f"<tr><th>{html.escape(str(k))}</th><td class=num>{html.escape(_fmt(str(v)))}</td></tr>"
                for k, v in d.items()
            )
            parts.append(f"<table>{rows}</table>")
    cfg = run / "config.yaml"
    if cfg.is_file():
        parts.append(
            f"<details><summary>config.yaml</summary><pre>{html.escape(cfg.read_text())}</pre></details>"
        )
    files = sorted(p for p in run.rglob("*") if p.is_file() and p.name != "report.html")
    listing = "".join(
        f"<tr><td>{html.escape(str(p.relative_to(run)))}</td><td class=num>{p.stat().st_size:,}</td></tr>"
        for p in files
    )
    parts.append(
        f"<details><summary>files in the run folder ({len(files)})</summary><table>{listing}</table></details>"
    )
    return "\n".join(parts)


SECTIONS = (
    ("summary", "Summary", _summary_section),
    ("training", "Training", _metrics_section),
    ("evaluation", "Evaluation", _eval_section),
    ("robustness", "Robustness", _robustness_section),
    ("explain", "Explainability (Grad-CAM)", _explain_section),
)


def build_report(run_dir: str | Path) -> str:
    """The HTML page of a run folder (see the module docstring)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"run folder {run} not found")
    nav = " ".join(f'<a href="#{k}">{t}</a>' for k, t, _ in SECTIONS)
    body = [f"<h1>ferlab run: {html.escape(run.resolve().name)}</h1>",
            f"<p>{html.escape(str(run.resolve()))} — report made {time.strftime('%Y-%m-%d %H:%M')}</p>",
            f"<nav>{nav}</nav>"]  # fmt: skip
    for key, title, fn in SECTIONS:
        body.append(f'<section id="{key}"><h2>{title}</h2>\n{fn(run)}</section>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>ferlab report: {html.escape(run.resolve().name)}</title><style>{CSS}</style></head>"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write :func:`build_report` to ``out`` (default ``RUN_DIR/report.html``)."""
    page = build_report(run_dir)
    path = Path(out) if out else Path(run_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(page, path)
    return path
