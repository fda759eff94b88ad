"""A bad-input corpus made here, run through the commands: every bad file gives one line naming it, every
good file in the same batch is written, and no input changes (hashes checked).

Cases: an image whose header claims 900 Mpx (a "decompression bomb"), one of 100 Mpx, a JPEG over a lowered
pixel limit (decoded smaller), truncated, empty and non-image files, a file name that is not valid UTF-8 (a
photo and a video), a damaged FER2013 CSV (a non-UTF-8 byte, a 200,000-character field), damaged weights
files and an unwritable run folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ferlab.cli import main
from ferlab.errors import ConfigError, ImageReadError
from ferlab.infer.recognizer import WEIGHTS_DIR
from ferlab.io import read_image

ASTRONAUT = WEIGHTS_DIR.parent / "assets" / "astronaut.jpg"
BAD_NAME = os.fsdecode(b"caf\xe9-\xff.jpg")  # Latin-1 bytes: not valid UTF-8


def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A tiny PNG whose header claims ``w`` x ``h`` (its pixel data is a few bytes): what a bomb looks like."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def corpus(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(ASTRONAUT, d / "good.jpg")
    shutil.copy(ASTRONAUT, d / BAD_NAME)
    _png_header_only(d / "bomb900.png", 30000, 30000)
    _png_header_only(d / "big100.png", 10000, 10000)
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.png").write_text("not an image")
    (d / "cut.jpg").write_bytes(ASTRONAUT.read_bytes()[:2000])
    return d


def test_bombs_are_refused_from_the_header_fast(corpus):
    import time

    t = time.perf_counter()
    with pytest.raises(ImageReadError, match=r"bomb900.png: image over 64 Mpx"):
        read_image(corpus / "bomb900.png")
    with pytest.raises(ImageReadError, match=r"big100.png: 10000x10000 = 100 Mpx is over the 64 Mpx limit"):
        read_image(corpus / "big100.png")
    assert time.perf_counter() - t < 1.0  # nothing was decoded


def test_large_jpeg_decodes_reduced_and_png_is_refused(corpus, monkeypatch):
    monkeypatch.setenv("FERLAB_MAX_PIXELS", "100000")  # the 512x512 astronaut is 262,144 px
    img = read_image(corpus / "good.jpg")
    assert img.shape == (256, 256, 3)  # JPEG's own 1/2-scale decode, never the full image
    Image.open(corpus / "good.jpg").save(corpus / "good.png")
    with pytest.raises(ImageReadError, match=r"good.png: 512x512 = 0 Mpx is over the 0 Mpx limit"):
        read_image(corpus / "good.png")


def test_predict_batch_survives_every_bad_file(corpus, tmp_path, capsys):
    before = {p.name: _sha(p) for p in corpus.iterdir()}
    out, csv_path, ann = tmp_path / "out.jsonl", tmp_path / "out.csv", tmp_path / "ann"
    rc = main(["predict", str(corpus), "--output", str(out), "--csv", str(csv_path), "--annotate", str(ann),
               "--model", "fast", "--threads", "1"])  # fmt: skip
    assert rc == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 7
    by = {Path(r["source"]).name: r for r in recs}
    ok = [n for n, r in by.items() if "error" not in r]
    assert sorted(ok) == sorted(["good.jpg", json.loads(json.dumps(BAD_NAME))])
    for n in ok:
        assert len(by[n]["faces"]) == 1 and by[n]["faces"][0]["label"] == "happy"
    errors = {n: r["error"] for n, r in by.items() if "error" in r}
    assert set(errors) == {"bomb900.png", "big100.png", "empty.jpg", "text.png", "cut.jpg"}
    assert all(n in e and "\n" not in e for n, e in errors.items())
    assert "over" in errors["bomb900.png"] and "empty file" in errors["empty.jpg"]
    assert len(csv_path.read_text(encoding="utf-8", errors="replace").splitlines()) == 1 + 7
    assert len(list(ann.iterdir())) == 2  # both readable photos annotated, the odd name included
    err = capsys.readouterr().err
    assert "5 unreadable" in err
    assert {p.name: _sha(p) for p in corpus.iterdir()} == before


def test_video_with_a_non_utf8_name(tmp_path):
    from ferlab import Recognizer
    from ferlab.infer.predict import predict_video

    frame = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)
    plain = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(plain), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (512, 512))
    for _ in range(3):
        vw.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    vw.release()
    odd = tmp_path / os.fsdecode(b"v\xefdeo.avi")
    plain.rename(odd)
    recs = list(predict_video(Recognizer("fast", threads=1), odd))
    assert len(recs) == 3 and all(len(r.faces) == 1 for r in recs)


def test_fer2013_csv_with_bad_bytes_and_a_huge_field(tmp_path):
    from ferlab.data.fer2013 import read_fer2013_csv
    from ferlab.io import SkipReport

    good = " ".join(["128"] * 2304)
    lines = [b"emotion,pixels,Usage", f"3,{good},Training".encode(), b"2,\xff\xfe 1 2,Training",
             f"1,{'7 ' * 100_000},PublicTest".encode(), f"0,{good},PrivateTest".encode()]  # fmt: skip
    path = tmp_path / "fer2013.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rep = SkipReport()
    ds = read_fer2013_csv(path, rep)
    assert len(ds.split("train")) == 1 and len(ds.split("test")) == 1
    assert rep.total == 2 and rep.counts["bad pixels"] == 2
    assert any("row 1 " in m for m in rep.examples) and any("row 2 " in m and "100000 pixel values" in m
                                                             for m in rep.examples)  # fmt: skip


@pytest.mark.real_data  # evaluate is given --dataset fer2013
def test_damaged_weights_files_are_one_line(tmp_path, tiny_weights, capsys):
    from safetensors.torch import save_file

    from ferlab.runtime.files import load_model

    cases = {}
    cases["garbage.safetensors"] = b"\x00\x01garbage" * 10
    p = tmp_path / "nometa.safetensors"
    import torch

    save_file({"w": torch.zeros(2)}, str(p))
    cases["nometa.safetensors"] = p.read_bytes()
    save_file({"w": torch.zeros(2)}, str(p), metadata={"format": "ferlab-weights", "model_name": "fernet_xs",
                                                        "model_kwargs": "{oops", "classes": "[]", "data_config": "{}"})  # fmt: skip
    cases["badjson.safetensors"] = p.read_bytes()
    meta = {"format": "ferlab-weights", "model_name": "smallcnn", "model_kwargs": "{}", "classes": '["a", "b"]',
            "data_config": json.dumps({"input_size": [1, 48, 48], "color": "gray", "mean": [0.5], "std": [0.5]})}  # fmt: skip
    save_file({"w": torch.zeros(2)}, str(p), metadata=meta)
    cases["wrongtensors.safetensors"] = p.read_bytes()
    cases["notackpt.pt"] = b"PK\x03\x04 not a zip"
    for name, data in cases.items():
        f = tmp_path / name
        f.write_bytes(data)
        with pytest.raises(ConfigError) as e:
            load_model(f)
        assert str(f) in str(e.value) and "\n" not in str(e.value), (name, str(e.value))
        assert main(["evaluate", "--checkpoint", str(f), "--dataset", "fer2013", "--split", "val", "--out",
                     str(tmp_path / "ev")]) == 2  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and name in err[0], err


def test_unwritable_run_folder_is_one_line(tmp_path):
    from ferlab.engine.config import from_dict
    from ferlab.engine.trainer import Trainer
    from ferlab.labels import CANONICAL

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    rng = np.random.default_rng(0)
    import ferlab

    split = ferlab.Split("train", rng.integers(0, 255, (32, 48, 48), dtype=np.uint8), rng.integers(0, 7, 32),
                         CANONICAL[:7])  # fmt: skip
    cfg = from_dict({"model": "smallcnn_tiny", "epochs": 1, "batch_size": 16, "progress": False,
                     "tensorboard": False, "output_dir": str(blocker), "name": "run", "threads": 1})  # fmt: skip
    with pytest.raises(ConfigError, match="cannot write the run folder"):
        Trainer(cfg, {"train": split, "val": split}, CANONICAL[:7])


@pytest.fixture
def folder_dataset(tmp_path, corpus, fer2013):
    """An ImageFolder dataset (train/ and test/ with expression folders): real faces plus the bad corpus."""
    root = tmp_path / "faces"
    for split, sp in (("train", fer2013["train"]), ("test", fer2013["test"])):
        for c in ("happy", "sad"):
            d = root / split / c
            d.mkdir(parents=True)
            idx = np.flatnonzero(sp.labels == sp.classes.index(c))[:12]
            for i in idx:
                Image.fromarray(sp.images[i]).save(d / f"{i}.png")
        for f in corpus.iterdir():  # every bad (and the odd-named) file in one class folder of each split
            shutil.copy(f, root / split / "happy" / f.name)
    return root


def _snapshot(root: Path) -> dict:
    return {p.relative_to(root): _sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_dataset_commands_report_and_keep_going(folder_dataset, tmp_path, capsys):
    before = _snapshot(folder_dataset)
    ds = f"folder:{folder_dataset}"
    # prepare: every readable photo gives a crop or a 'no face' line; the bad ones are named
    out = tmp_path / "prep"
    assert main(["prepare", str(folder_dataset / "test"), str(out), "--detector", "haar"]) == 0
    err = capsys.readouterr()
    assert "bomb900.png" in err.err and "5 unreadable" in (err.out + err.err)
    assert (tmp_path / "prep.skipped.txt").read_text().count("\n") >= 5
    # export-data and evaluate on the folder: the five bad files skipped, named, listed beside the output
    cache = tmp_path / "c.npz"
    assert main(["export-data", "--dataset", ds, "--out", str(cache), "--size", "48"]) == 0
    err = capsys.readouterr().err
    assert "skipped 10 items (10 unreadable)" in err and "big100.png" in err
    assert len((tmp_path / "c.npz.skipped.txt").read_text().splitlines()) == 10
    ev = tmp_path / "ev"
    assert (
        main(["evaluate", "--checkpoint", "fast", "--dataset", ds, "--split", "test", "--out", str(ev)]) == 0
    )
    text = capsys.readouterr()
    assert "skipped 5 items (5 unreadable)" in text.err and "accuracy" in text.out
    assert (ev / f"{folder_dataset.name}_test_skipped.txt").is_file()
    # train on it: the run starts, says what it skipped, and keeps the list in the run folder
    assert main(["train", "--threads", "1", "model=smallcnn_tiny", f"dataset={ds}", "epochs=1", "batch_size=8",
                 "val_split=null", "val_fraction=0.25", "test_splits=[test]", f"output_dir={tmp_path}", "name=r",
                 "tensorboard=false", "scheduler=none"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "skipped" in err and "bomb900.png" in err
    assert "bomb900.png" in (tmp_path / "r" / "skipped.txt").read_text()
    assert _snapshot(folder_dataset) == before  # no input changed


def test_datasets_command_names_the_skipped_rows(tmp_path, capsys):
    good = " ".join(["128"] * 2304)
    lines = [b"emotion,pixels,Usage", f"3,{good},Training".encode(), b"2,\xff\xfe 1 2,Training",
             f"9,{good},Training".encode(), f"0,{good},PrivateTest".encode(), f"1,{good},PublicTest".encode()]  # fmt: skip
    root = tmp_path / "data"
    (root / "fer2013").mkdir(parents=True)
    (root / "fer2013" / "fer2013.csv").write_bytes(b"\n".join(lines) + b"\n")
    assert main(["datasets", "--data-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 items" in out and "row 1 " in out and "row 2 " in out and "out of range 0..6" in out
