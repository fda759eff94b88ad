"""The one table writer and the one atomic-write helper."""

from __future__ import annotations

import pytest

from ferlab.io import atomic_path, write_atomic
from ferlab.tables import markdown_table


def test_markdown_table_aligns_and_fills():
    t = markdown_table(["", "a", "b"], [["x", 1, 2.5], ["y", None]], "lrr")
    assert t.splitlines() == ["| | a | b |", "|---|---:|---:|", "| x | 1 | 2.5 |", "| y | - | |"]


def test_markdown_table_padded_for_terminals():
    assert markdown_table(["split", "n"], [["train", 100]], pad=True).splitlines() == [
        "| split |   n |", "|-------|-----|", "| train | 100 |"]  # fmt: skip


def test_markdown_table_refuses_bad_shapes():
    with pytest.raises(ValueError, match="3 cells for 2 columns"):
        markdown_table(["a", "b"], [[1, 2, 3]])
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a", "b"], [[1, 2]], "l")


def test_atomic_path_replaces_only_on_success(tmp_path):
    out = tmp_path / "sub" / "report.md"
    write_atomic("first\n", out)
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("killed")
    assert out.read_text() == "first\n"  # the old file is whole
    assert [p.name for p in out.parent.iterdir()] == ["report.md"]  # no temporary left behind
    with atomic_path(tmp_path / "fig.png", keep_suffix=True) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"png")
    assert (tmp_path / "fig.png").read_bytes() == b"png"
