"""Model files dispatch on their format through one loader table; one prediction loop serves every scorer."""

from __future__ import annotations

import numpy as np
import pytest

import ferlab
from ferlab.errors import ConfigError
from ferlab.runtime import files
from ferlab.runtime.predict import predict_probs


def test_loader_table_dispatches_on_the_format(tmp_path):
    import torch
    from safetensors.torch import save_file

    seen = []
    files.register_loader("test-format", lambda path, meta: seen.append(path) or ("m", ("a",), {}))
    p = tmp_path / "x.safetensors"
    save_file({"w": torch.zeros(1)}, str(p), metadata={"format": "test-format"})
    assert files.load_model(p) == ("m", ("a",), {}) and seen == [p]
    with pytest.raises(ConfigError, match="already registered"):
        files.register_loader("test-format", lambda path, meta: None)
    assert "ferlab-ensemble" in files._LOADERS  # ensembles registered by the runtime package


def test_run_checkpoint_and_snapshots(tmp_path):
    assert files.run_checkpoint(tmp_path) is None
    for n in ("last.pt", "epoch_010.pt", "epoch_002.pt", "epoch_x.pt"):
        (tmp_path / n).write_bytes(b"")
    assert files.run_checkpoint(tmp_path) == tmp_path / "last.pt"
    (tmp_path / "best.pt").write_bytes(b"")
    assert files.run_checkpoint(tmp_path) == tmp_path / "best.pt"
    assert list(files.snapshot_paths(tmp_path)) == [2, 10]


def test_one_loop_for_torch_and_any_scorer_with_logits():
    import torch

    model = ferlab.create_model("smallcnn_tiny", num_classes=7).eval()

    class LogitsOnly:  # what an ONNX Runtime model offers: numpy logits and a data config
        data_config = model.data_config
        num_classes = 7

        def logits(self, x):
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()

    crops = np.random.default_rng(0).integers(0, 255, (5, 48, 48), dtype=np.uint8)
    for tta in ("none", "flip"):
        a = predict_probs(model, crops, tta=tta, precision="fp32")
        b = predict_probs(LogitsOnly(), crops, tta=tta)
        np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ConfigError, match="not a scorer"):
        predict_probs(object(), crops)
