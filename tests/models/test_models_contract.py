"""The one output contract, enforced for every registered model (tiny inputs, CPU, offline)."""

from __future__ import annotations

import io

import pytest
import torch

import ferlab
from families import representatives
from ferlab.errors import ConfigError
from ferlab.models import model_info

NAMES = ferlab.list_models()


def _make(name: str, num_classes: int):
    info = model_info(name)
    size = info.test_size or info.data.input_size[1]
    torch.manual_seed(0)
    model = ferlab.create_model(name, num_classes=num_classes, img_size=size)
    return model, (info.data.input_size[0], size, size)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("num_classes", [5, 8])
def test_forward_backward(name, num_classes):
    model, shape = _make(name, num_classes)
    model.train()
    x = torch.randn(3, *shape)
    out = model(x)
    assert out.shape == (3, num_classes)
    assert torch.isfinite(out).all()
    outs = model.forward_outputs(x)
    assert outs["logits"].shape == (3, num_classes)
    assert outs["embedding"].shape == (3, model.num_features)
    loss = outs["logits"].logsumexp(1).mean() + sum(
        v.float().mean() for k, v in outs.items() if k == "attn_reg"
    )
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None)]
    assert not no_grad, f"parameters without gradient: {no_grad[:10]}"


@pytest.mark.parametrize("name", NAMES)
def test_eval_determinism_and_batch_independence(name):
    model, shape = _make(name, 7)
    model.eval()
    torch.manual_seed(1)
    x = torch.randn(4, *shape)
    with torch.no_grad():
        a = model(x)
        b = model(x)
        assert torch.equal(a, b)
        x2 = x.clone()
        x2[1:] = torch.randn(3, *shape)
        c = model(x2)
        alone = model(x[:1])
    torch.testing.assert_close(c[0], a[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(alone[0], a[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_reset_classifier(name):
    model, shape = _make(name, 7)
    model.reset_classifier(3)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, 3)
    assert model.num_classes == 3


@pytest.mark.parametrize("name", NAMES)
def test_data_config_and_gradcam_layer(name):
    model, _ = _make(name, 7)
    cfg = model.data_config
    assert cfg.color in ("gray", "rgb")
    assert len(cfg.mean) == len(cfg.std) == cfg.input_size[0]
    assert model.gradcam_layer, "every model names its Grad-CAM target layer"
    model.get_submodule(model.gradcam_layer)


@pytest.mark.parametrize("name", representatives())  # size variants: tests/families.py
def test_onnx_or_torchscript_export(name):
    model, shape = _make(name, 7)
    model.eval()
    x = torch.randn(2, *shape)
    buf = io.BytesIO()
    try:
        torch.onnx.export(
            model, (x,), buf, input_names=["input"], output_names=["logits"], dynamo=False, opset_version=17
        )
        exported = "onnx"
    except Exception:  # noqa: BLE001 - fall back to TorchScript, which must then work
        scripted = torch.jit.trace(model, x)
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), model(x), rtol=1e-4, atol=1e-4)
        exported = "torchscript"
    assert exported


def test_registry_errors():
    with pytest.raises(ConfigError, match="valid"):
        ferlab.create_model("no_such_model")
    with pytest.raises(ConfigError, match="no option"):
        ferlab.create_model("smallcnn", not_a_switch=True)
    with pytest.raises(ConfigError, match="already registered"):
        ferlab.register_model()(model_info("smallcnn").fn)


def test_pretrained_from_local_file(tmp_path):
    from safetensors.torch import save_file

    src = ferlab.create_model("smallcnn_tiny", num_classes=7)
    path = tmp_path / "w.safetensors"
    save_file(src.state_dict(), str(path))
    dst = ferlab.create_model("smallcnn_tiny", num_classes=5, pretrained=path)  # head shape differs: skipped
    torch.testing.assert_close(dst.features[0][0][0].weight, src.features[0][0][0].weight)
    with pytest.raises(ConfigError, match="not found"):
        ferlab.create_model("smallcnn_tiny", pretrained=tmp_path / "missing.safetensors")


def test_pretrained_rgb_stem_adapts_to_grayscale(tmp_path):
    """ImageNet-style RGB weights load into a 1-channel model: the first conv is summed over RGB."""
    from safetensors.torch import save_file

    from ferlab.models import load_pretrained

    rgb = ferlab.create_model("resnet18", num_classes=7, img_size=64)
    path = tmp_path / "rgb.safetensors"
    save_file(rgb.state_dict(), str(path))
    gray = ferlab.create_model("resnet18", num_classes=5, in_chans=1, img_size=64)
    res = load_pretrained(gray, path)
    assert res["adapted"] == ["conv1.weight"] and sorted(res["mismatched"]) == ["head.bias", "head.weight"]
    torch.testing.assert_close(gray.conv1.weight, rgb.conv1.weight.sum(1, keepdim=True))
