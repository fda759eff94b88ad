"""No command writes onto its inputs or replaces an existing output unless told (hashes checked)."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
from PIL import Image

from ferlab.cli import main
from ferlab.infer.recognizer import WEIGHTS_DIR


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _small_root(tmp_path, data_root):
    d = np.load(data_root / "fer2013" / "fer2013.npz")
    keep = np.r_[np.arange(60), np.flatnonzero(d["usage"] != d["usage"][0])[:60]]
    root = tmp_path / "data"
    (root / "fer2013").mkdir(parents=True)
    np.savez(root / "fer2013" / "fer2013.npz", **{k: d[k][keep] for k in d.files})
    return root


def test_export_data_never_overwrites_its_source_or_an_output(tmp_path, data_root, capsys):
    root = _small_root(tmp_path, data_root)
    src = root / "fer2013" / "fer2013.npz"
    before = _sha(src)
    for extra in ([], ["--overwrite"]):
        rc = main(["export-data", "--dataset", "fer2013", "--data-dir", str(root), "--out", str(src), *extra])
        assert rc == 2 and "inside the data it is made from" in capsys.readouterr().err
    assert _sha(src) == before
    out = tmp_path / "cache.npz"
    assert main(["export-data", "--dataset", "fer2013", "--data-dir", str(root), "--out", str(out)]) == 0
    first = _sha(out)
    assert main(["export-data", "--dataset", "fer2013", "--data-dir", str(root), "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and _sha(out) == first
    args = ["export-data", "--dataset", "fer2013", "--data-dir", str(root), "--out", str(out), "--overwrite"]
    assert main(args) == 0


def test_predict_annotate_into_the_input_folder_keeps_the_photos(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(WEIGHTS_DIR.parent / "assets" / "astronaut.jpg", photos / "p.jpg")
    Image.new("RGB", (64, 64), (120, 120, 120)).save(photos / "q.png")
    before = {p.name: _sha(p) for p in photos.iterdir()}
    rc = main(["predict", str(photos), "--annotate", str(photos), "--model", "fast", "--threads", "1"])
    assert rc == 0
    after = {p.name: _sha(p) for p in photos.iterdir()}
    assert {k: after[k] for k in before} == before  # the inputs are untouched
    assert {"p_2.jpg", "q_2.png"} <= set(after)  # the annotated copies went beside them
