"""The content-addressed probability cache (ferlab.runtime.predcache): hits are exact, keys follow content."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ferlab
from ferlab.runtime.predcache import cached_predict_probs, model_fingerprint, probs_key
from ferlab.runtime.predict import predict_probs


@pytest.fixture
def model():
    torch.manual_seed(0)
    return ferlab.create_model("smallcnn_tiny").eval()


@pytest.fixture
def faces():
    return np.random.default_rng(0).integers(0, 256, (20, 48, 48), dtype=np.uint8)


def test_miss_then_exact_hit_without_running_the_model(model, faces, tmp_path, monkeypatch):
    p1, s1, hit1 = cached_predict_probs(model, faces, tmp_path, batch_size=8)
    assert not hit1 and p1.shape == (20, 7) and s1 > 0 and len(list(tmp_path.glob("*.npz"))) == 1
    np.testing.assert_allclose(p1, predict_probs(model, faces, batch_size=8), rtol=1e-6, atol=1e-7)

    def boom(*a, **k):
        raise AssertionError("the model ran on a cache hit")

    monkeypatch.setattr(model, "forward", boom)
    p2, s2, hit2 = cached_predict_probs(model, faces, tmp_path, batch_size=8)
    assert hit2 and s2 == s1  # the seconds of the computation that filled the entry
    np.testing.assert_array_equal(p1, p2)
    # another thread count (or CPU): still a hit, but that timing is not this machine's: NaN
    monkeypatch.setattr("ferlab.runtime.predcache._where", lambda: "another CPU | 7 threads")
    p3, s3, hit3 = cached_predict_probs(model, faces, tmp_path, batch_size=8)
    assert hit3 and np.isnan(s3)
    np.testing.assert_array_equal(p1, p3)


def test_key_follows_weights_images_and_settings(model, faces, tmp_path):
    k = probs_key(model, faces, tta="none", precision="fp32")
    assert k == probs_key(model, faces.copy(), tta="none", precision="fp32")  # same content, other object
    assert k != probs_key(model, faces, tta="flip", precision="fp32")
    other = faces.copy()
    other[3, 10, 10] ^= 1  # one pixel
    assert k != probs_key(model, other, tta="none", precision="fp32")
    fp = model_fingerprint(model)
    with torch.no_grad():
        next(model.parameters())[0].flatten()[0] += 1e-3  # one weight
    assert model_fingerprint(model) != fp
    # changed code misses too: the source of the model's classes is part of the key
    import ferlab.runtime.predcache as pc

    code = pc._code_fingerprint(model)
    real_read = pc.Path.read_bytes
    pc.Path.read_bytes = lambda self: real_read(self) + (b"# edited" if self.name == "smallcnn.py" else b"")
    try:
        assert pc._code_fingerprint(model) != code
    finally:
        pc.Path.read_bytes = real_read
    # a retrained (here: changed) model misses and gets its own, different probabilities
    cached_predict_probs(model, faces, tmp_path)
    with torch.no_grad():
        next(model.parameters()).mul_(-1.0)
    p, _, hit = cached_predict_probs(model, faces, tmp_path)
    assert not hit and len(list(tmp_path.glob("*.npz"))) == 2
    np.testing.assert_allclose(p, predict_probs(model, faces), rtol=1e-6, atol=1e-7)


def test_damaged_entry_is_recomputed_and_no_cache_writes_nothing(model, faces, tmp_path):
    p, _, _ = cached_predict_probs(model, faces, tmp_path)
    (entry,) = tmp_path.glob("*.npz")
    entry.write_bytes(b"not a zip")
    p2, _, hit = cached_predict_probs(model, faces, tmp_path)
    assert not hit
    np.testing.assert_array_equal(p, p2)
    assert np.load(entry)["probs"].shape == (20, 7)  # replaced by a good entry
    before = sorted(tmp_path.rglob("*"))
    _, _, hit = cached_predict_probs(model, faces, None)
    assert not hit and sorted(tmp_path.rglob("*")) == before
    assert model_fingerprint(object()) is None  # ONNX sessions and other scorers are not cached
