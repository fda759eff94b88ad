"""The one Markdown table writer: every report, benchmark and zoo table of ferlab goes through it."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(
    header: Sequence, rows: Sequence[Sequence], align: str | None = None, pad: bool = False
) -> str:
    """A GitHub-flavoured Markdown table (no trailing newline).

    Args:
        header: the column titles.
        rows: the rows, one cell per column (``str()`` of each; ``None`` is shown as ``-``). A row may be
            shorter than the header (its last cells are left empty).
        align: one letter per column, ``l`` (left) or ``r`` (right, for numbers); default all left.
        pad: pad every cell to its column's width (right-justified), for tables read in a terminal.

    Raises:
        ValueError: a row longer than the header, or ``align`` of another length.
    """
    head = [_cell(h) for h in header]
    n = len(head)
    body = []
    for r in rows:
        cells = [_cell(c) for c in r]
        if len(cells) > n:
            raise ValueError(f"a table row has {len(cells)} cells for {n} columns: {cells}")
        body.append(cells + [""] * (n - len(cells)))
    align = align or "l" * n
    if len(align) != n or set(align) - {"l", "r"}:
        raise ValueError(f"align {align!r} must give 'l' or 'r' for each of the {n} columns")
    if pad:
        widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(head)]
        lines = [
            "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |" for cells in [head, *body]
        ]
        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    else:
        lines = ["|" + "|".join(f" {c} " if c else " " for c in cells) + "|" for cells in [head, *body]]
        rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align)
    return "\n".join([lines[0], rule, *lines[1:]])


def _cell(v) -> str:
    return "-" if v is None else str(v).replace("\n", " ")
