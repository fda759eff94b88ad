"""The ``ferlab`` command line: every command explains itself; errors are one line; commands do real work."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ferlab.cli import build_parser, main

COMMANDS = [
    "datasets",
    "balance",
    "export-data",
    "prepare",
    "train",
    "evaluate",
    "protocol",
    "bench",
    "list-models",
    "predict",
    "export",
    "serve",
    "ensemble",
    "robustness",
    "explain",
    "profile",
    "report",
    "generate",
]


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for c in COMMANDS:
        assert c in out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_each_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: ferlab " + cmd in capsys.readouterr().out


def test_datasets_prints_real_counts(capsys, data_root):
    assert main(["datasets", "--data-dir", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "28709" in out and "3589" in out and "ferplus" in out


def test_errors_are_one_line(capsys, tmp_path):
    assert main(["balance", "--dataset", "fer2014"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown dataset 'fer2014'" in err and "fer2013" in err
    assert main(["datasets", "--data-dir", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "epochs=zero"]) == 2
    assert "epochs" in capsys.readouterr().err


def test_prepare_and_train_evaluate_roundtrip(tmp_path, capsys, data_root):
    from skimage import data

    raw = tmp_path / "raw"
    raw.mkdir()
    Image.fromarray(data.astronaut()).save(raw / "astronaut.jpg")
    (raw / "broken.jpg").write_bytes(b"not a jpeg")
    assert main(["prepare", str(raw), str(tmp_path / "faces"), "--size", "48"]) == 0
    out = capsys.readouterr().out
    assert "1 unreadable" in out or "unreadable" in out
    assert len(list((tmp_path / "faces").rglob("*.png"))) == 1

    # a tiny folder dataset, trained for one epoch and evaluated from the command line
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("happy", "sad"):
            d = tmp_path / "ds" / split / cls
            d.mkdir(parents=True)
            for i in range(12):
                Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(d / f"{i}.png")
    runs = tmp_path / "runs"
    rc = main(["train", "model=smallcnn_tiny", f"dataset=folder:{tmp_path / 'ds'}", "dataset_kwargs={size: 48}",
               "val_split=null", "val_fraction=0.25", "epochs=1", "batch_size=4", "progress=false",
               "tensorboard=false", f"output_dir={runs}", "name=cli"])  # fmt: skip
    assert rc == 0
    assert (runs / "cli" / "model.safetensors").is_file()
    rc = main(["evaluate", "--checkpoint", str(runs / "cli"), "--dataset", f"folder:{tmp_path / 'ds'}", "--split", "test",
               "--tta", "flip", "--out", str(tmp_path / "eval")])  # fmt: skip
    assert rc == 0
    assert "accuracy" in capsys.readouterr().out
    assert (tmp_path / "eval").glob("*_confusion.png")


def test_console_entry_point_runs():
    r = subprocess.run(
        [sys.executable, "-m", "ferlab", "list-models", "smallcnn*", "--no-flops"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "smallcnn_tiny" in r.stdout and "74,159" in r.stdout


def test_parser_builds():
    assert build_parser().prog == "ferlab"


def test_train_ends_with_the_run_folder_and_a_table(tmp_path, fer2013, capsys):
    import numpy as np

    from ferlab.cli import format_train_summary
    from ferlab.data.base import FERDataset
    from ferlab.data.cache import save_dataset

    small = FERDataset("fer2013", fer2013.classes, {"train": fer2013["train"].subset(np.arange(64)),
                       "val": fer2013["val"].subset(np.arange(32)), "test": fer2013["test"].subset(np.arange(32))})  # fmt: skip
    cache = save_dataset(small, tmp_path / "s.npz")
    rc = main(["train", "--threads", "1", "model=smallcnn_tiny", f"dataset=cache:{cache}", "epochs=1", "batch_size=16",
               "test_splits=[test]", f"output_dir={tmp_path}", "name=r", "tensorboard=false", "scheduler=none"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert f"run folder: {tmp_path / 'r'}" in out and "stopped by its last epoch" in out
    assert "| test split |" in out and "|       test |" in out and "1 thread(s)" in out
    text = format_train_summary({"epochs_run": 3, "train_time_s": 120.0, "budget_reached": True, "precision": "fp32",
                                 "threads": 2, "best_val_acc": 0.5, "test_acc": 0.4, "test_macro_f1": 0.3})  # fmt: skip
    assert "stopped by its time budget" in text and "| test | 40.00 % | 0.3000 |" in " ".join(
        text.replace("|", " | ").split()
    ).replace("| |", "|")
