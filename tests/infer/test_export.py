"""ONNX export: same probabilities as PyTorch fp32 on real FER2013 faces, self-describing files, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ferlab
from ferlab.cli import main
from ferlab.errors import ConfigError
from ferlab.infer.onnx import OnnxModel, _model_bytes, check_parity, export_onnx, read_metadata
from ferlab.labels import CANONICAL
from ferlab.runtime.predict import predict_probs

TOL = 1e-4


@pytest.fixture(scope="module")
def faces(fer2013):
    """64 real PrivateTest faces, 48x48 uint8."""
    return np.ascontiguousarray(fer2013.split("test").images[:64])


@pytest.fixture(scope="module")
def tiny(tiny_weights):
    from ferlab.runtime.files import load_model

    return load_model(tiny_weights)[0]


def _random_model(name: str):
    torch.manual_seed(1)
    m = ferlab.create_model(name, num_classes=7).eval()
    m.classes = CANONICAL[:7]
    return m


@pytest.mark.parametrize("name", ["fernet_xs", "smallcnn", "mobilenet_v1"])
def test_onnx_matches_torch_fp32_on_real_faces(name, tiny, faces, tmp_path):
    # fernet_xs: the tiny weights (gray 48x48); smallcnn: another gray net; mobilenet_v1: RGB 224x224,
    # so the crops are resized and expanded to 3 planes by the shared transform first
    model = tiny if name == "fernet_xs" else _random_model(name)
    if name == "mobilenet_v1":
        faces = faces[:16]  # 224x224 input: 16 faces keep the test fast on two shared cores
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    onnx_model = OnnxModel.from_file(path)
    ref = predict_probs(model, faces, batch_size=32, precision="fp32")
    got = onnx_model.predict_probs(faces, batch_size=32)
    assert got.dtype == np.float32 and got.shape == (len(faces), 7)
    np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)
    assert np.abs(got - ref).max() < TOL
    assert (got.argmax(1) == ref.argmax(1)).all()
    assert check_parity(model, path, faces) < TOL


def test_tta_views_match(tiny, faces):
    onnx_model = OnnxModel.from_model(tiny)
    for tta in ("flip", "tencrop"):
        ref = predict_probs(tiny, faces[:16], tta=tta, precision="fp32")
        assert np.abs(onnx_model.predict_probs(faces[:16], tta=tta) - ref).max() < TOL


def test_dynamic_and_static_batch(tiny, faces, tmp_path):
    onnx_model = OnnxModel.from_file(export_onnx(tiny, tmp_path / "dyn.onnx"))
    x = ferlab.create_transform(tiny.data_config)(faces[:37]).numpy()
    assert onnx_model.logits(x[:1]).shape == (1, 7)
    assert onnx_model.logits(x).shape == (37, 7)
    whole = onnx_model.predict_probs(faces)
    np.testing.assert_allclose(onnx_model.predict_probs(faces, batch_size=37), whole, atol=1e-6)
    np.testing.assert_allclose(onnx_model.predict_probs(faces, batch_size=1), whole, atol=1e-6)

    static = OnnxModel.from_file(export_onnx(tiny, tmp_path / "static.onnx", dynamic_batch=False))
    assert static.session.get_inputs()[0].shape[0] == 1
    np.testing.assert_allclose(static.predict_probs(faces[:5]), whole[:5], atol=1e-6)
    assert onnx_model.predict_probs(faces[:0]).shape == (0, 7)


def test_threads_split_large_batches_same_results(tiny, faces):
    # with 2 threads a batch of >= 2 x SPLIT_MIN_PER_THREAD faces runs as two halves on one-thread sessions;
    # smaller batches use the session's intra-op threads; every path gives the one-thread answer
    from ferlab.infer.onnx import SPLIT_MIN_PER_THREAD

    x = ferlab.create_transform(tiny.data_config)(faces).numpy()
    one, two = OnnxModel.from_model(tiny, threads=1), OnnxModel.from_model(tiny, threads=2)
    assert (one.threads, two.threads) == (1, 2)
    ref = one.logits(x)
    small = 2 * SPLIT_MIN_PER_THREAD - 1
    np.testing.assert_allclose(two.logits(x[:small]), ref[:small], atol=1e-5)
    assert two._split_session is None  # too small to split
    np.testing.assert_allclose(two.logits(x), ref, atol=1e-5)  # 64 faces: split
    assert two._split_session is not None and one._split_session is None
    odd = x[: 2 * SPLIT_MIN_PER_THREAD + 3]  # uneven halves keep their order
    np.testing.assert_allclose(two.logits(odd), ref[: len(odd)], atol=1e-5)
    np.testing.assert_allclose(two.predict_probs(faces), one.predict_probs(faces), atol=1e-6)
    with pytest.raises(ConfigError, match="threads"):
        OnnxModel.from_model(tiny, threads=0)


def test_metadata_round_trip_and_atomic_write(tiny, tmp_path):
    import onnx

    path = tmp_path / "sub" / "model.onnx"
    export_onnx(tiny, path, opset=17)
    export_onnx(tiny, path, opset=18)  # replaces the file in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # no temporary file left
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert any(o.domain in ("", "ai.onnx") and o.version == 18 for o in proto.opset_import)
    meta = read_metadata(path)
    assert meta["format"] == "ferlab-onnx" and meta["model_name"] == "fernet_xs"
    assert tuple(meta["classes"]) == tuple(tiny.classes)
    assert meta["data_config"] == tiny.data_config.to_dict()
    m = OnnxModel.from_file(path)
    assert m.classes == tuple(tiny.classes) and m.data_config == tiny.data_config


def test_recognizer_onnx_backend_same_labels(tiny_weights, faces):
    from skimage import data

    rt = ferlab.Recognizer(tiny_weights, backend="torch", precision="fp32")
    ro = ferlab.Recognizer(tiny_weights, backend="onnx")
    assert ro.backend == "onnx" and ro.precision == "fp32"
    assert [f.label for f in ro.predict_faces(faces)] == [f.label for f in rt.predict_faces(faces)]
    np.testing.assert_allclose(ro.predict_proba(faces), rt.predict_proba(faces), atol=TOL)
    photo = data.astronaut()
    a, b = rt.predict(photo), ro.predict(photo)
    assert len(a) == len(b) == 1 and a[0].label == b[0].label and a[0].box == b[0].box


def test_bad_files_are_one_line_errors(tiny, tmp_path):
    import onnx

    cases = {
        tmp_path / "missing.onnx": "not found",
        tmp_path: "is a folder",
        tmp_path / "junk.onnx": "not a loadable ONNX model",
        tmp_path / "plain.onnx": "without ferlab metadata",
    }
    (tmp_path / "junk.onnx").write_bytes(b"this is not a protobuf")
    proto = onnx.load_from_string(_model_bytes(tiny, 17, True))
    del proto.metadata_props[:]
    (tmp_path / "plain.onnx").write_bytes(proto.SerializeToString())
    for path, msg in cases.items():
        with pytest.raises(ConfigError) as e:
            OnnxModel.from_file(path)
        assert msg in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="not a ferlab model"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")


def test_cli_export(tiny_weights, tmp_path, capsys, data_root):
    out = tmp_path / "tiny.onnx"
    assert main(["export", "--checkpoint", str(tiny_weights), "--format", "onnx", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and "64 FER2013 test faces" in text and "max |p_onnx - p_torch|" in text
    diff = float(text.rsplit("= ", 1)[1])
    assert diff < TOL

    assert main(["export", "--checkpoint", str(tmp_path / "nope.safetensors"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope.safetensors" in err and "not found" in err
    assert main(["export", "--model", "no-such-model", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_cli_int8_export_checks_before_writing(tmp_path, capsys, data_root):
    """`--quantize int8`: 7-bit weights (exact on CPUs without VNNI), checked on 512 faces before the file is written."""
    import json

    out = tmp_path / "fast.int8.onnx"
    args = ["export", "--model", "fast", "--quantize", "int8", "--calib-faces", "64", "--out", str(out)]
    assert main([*args, "--min-agreement", "1.01"]) == 2  # no INT8 model agrees on more than all faces
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not written" in err and not out.exists()
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "512 FER2013 test faces" in text and "top-1 agreement" in text
    agree = float(text.split("top-1 agreement ")[1].split(" %")[0])
    assert agree >= 95.0, text
    m = OnnxModel.from_file(out)
    q = m.metadata["quantization"]
    q = json.loads(q) if isinstance(q, str) else q
    assert m.is_int8 and q["reduce_range"] is True and q["calibration_crops"] == 64
