"""One model reference: shipped names, files and architectures mean the same in every command."""

from __future__ import annotations

import pytest

from ferlab.cli import main
from ferlab.errors import ConfigError
from ferlab.infer.recognizer import WEIGHTS_DIR, resolve_model

ASTRONAUT = str(WEIGHTS_DIR.parent / "assets" / "astronaut.jpg")


def test_architecture_name_says_it_has_no_weights():
    with pytest.raises(ConfigError, match="'fernet_s' is an architecture of the zoo without trained weights"):
        resolve_model("fernet_s")


def test_onnx_files_resolve_to_onnx_runtime(tmp_path, tiny_weights):
    from ferlab.infer.onnx import OnnxModel, export_onnx

    path = export_onnx(str(tiny_weights), tmp_path / "tiny.onnx")
    m = resolve_model(str(path), threads=1)
    assert isinstance(m, OnnxModel) and m.precision == "fp32" and len(m.classes) == 7


def test_evaluate_accepts_shipped_names_and_onnx(tmp_path, data_root, capsys):
    out = tmp_path / "ev"
    rc = main(["evaluate", "--checkpoint", "fast", str(WEIGHTS_DIR / "fast.int8.onnx"), "--dataset", "fer2013",
               "--split", "val", "--data-dir", str(data_root), "--out", str(out), "--threads", "1"])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "fast: accuracy" in text and "fast.int8.onnx: accuracy" in text
    assert (out / "fer2013_val.md").is_file()
    assert main(["evaluate", "--checkpoint", "fast", "--dataset", "fer2013", "--split", "val"]) == 2
    assert "give --out" in capsys.readouterr().err


def test_predict_with_an_architecture_name_is_one_line(capsys):
    assert main(["predict", ASTRONAUT, "--model", "fernet_s"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "without trained weights" in err[0]


def test_list_models_names_the_shipped_weights(capsys):
    assert main(["list-models", "fernet*", "--no-flops"]) == 0
    out = capsys.readouterr().out
    assert "Trained weights shipped" in out
    rows = {
        c[0]: c[1:]
        for c in ([x.strip() for x in ln.strip().strip("|").split("|")] for ln in out.splitlines())
    }
    assert rows["default"] == ["fernet_s", "7", "yes"] and rows["fast"] == ["fernet_xs", "7", "yes"]
    assert rows["zoo/pattlite"] == ["pattlite", "7", "no"]  # shipped zoo weights are listed too


def test_onnx_file_and_shipped_names_work_as_models(tiny_weights):
    from ferlab import Recognizer
    from ferlab.infer.ensemble import Ensemble

    r = Recognizer(str(WEIGHTS_DIR / "fast.int8.onnx"), threads=1)  # backend follows the file
    assert r.backend == "onnx-int8" and r.precision == "int8"
    (face,) = r.predict(ASTRONAUT)
    assert face.label == "happy"
    ens = Ensemble(["fast", str(tiny_weights)])
    assert len(ens.members) == 2
    with pytest.raises(ConfigError, match="ONNX files cannot be members"):
        Ensemble([str(WEIGHTS_DIR / "fast.int8.onnx")])
