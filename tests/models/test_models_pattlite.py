"""PAtt-Lite specifics: truncation point, parameter counts, patch shapes, per-sample vs cross-batch attention."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import ferlab
from ferlab.errors import ConfigError
from ferlab.models import load_pretrained
from ferlab.models.pattlite import DotProductSelfAttention, PAttLite


def _n(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def model() -> PAttLite:
    torch.manual_seed(0)
    return ferlab.create_model("pattlite", num_classes=7).eval()


@pytest.fixture(scope="module")
def x224() -> torch.Tensor:
    return torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def test_param_count(model):
    # Reading: the reference layer list (ARCHITECTURES.md section 2) in PyTorch's count; the paper's "1.10 M" is
    # Keras' count, which adds the BN moving mean/variance.
    assert _n(model) == 1_093_000
    assert _n(model.backbone) == 812_352
    assert [_n(model.patch_extract[i]) for i in (0, 2, 4)] == [139_520, 66_816, 65_792]
    assert (_n(model.fc), _n(model.norm), _n(model.attn), _n(model.head)) == (8_224, 64, 1, 231)
    bn_stats = sum(b.numel() for k, b in model.named_buffers() if k.endswith(("running_mean", "running_var")))
    assert _n(model) + bn_stats == 1_102_664
    assert _n(model) + bn_stats == pytest.approx(1.10e6, rel=0.005)


@pytest.mark.parametrize("num_classes", [5, 8])
def test_param_count_formula(num_classes):
    assert _n(ferlab.create_model("pattlite", num_classes=num_classes)) == 1_092_769 + 33 * num_classes


def test_attention_mode_switch():
    none = ferlab.create_model("pattlite", attention_mode="none")
    assert isinstance(none.attn, nn.Identity) and _n(none) == 1_093_000 - 1
    with pytest.warns(UserWarning, match="batch"):
        batch = ferlab.create_model("pattlite", attention_mode="batch")
    assert isinstance(batch.attn, DotProductSelfAttention) and _n(batch) == 1_093_000
    with pytest.raises(ConfigError, match="tokens"):
        ferlab.create_model("pattlite", attention_mode="spatial")


def test_phase2_dropout_switches():
    m = ferlab.create_model("pattlite", drop_rate=0.2, attn_drop_rate=0.2, spatial_drop_rate=0.2)
    assert (m.drop.p, m.attn_drop.p, m.spatial_drop.p) == (0.2, 0.2, 0.2)
    assert isinstance(m.spatial_drop, nn.Dropout2d)


def test_backbone_truncated_at_block9_depthwise(model):
    bb = model.backbone
    assert [len(s) for s in bb.blocks] == [1, 2, 2, 4]  # blocks 1..9 of MobileNetV1's 13
    last = bb.blocks[3][3]
    assert last.conv_dw.groups == last.conv_dw.in_channels == 512
    assert isinstance(last.bn1.act, nn.ReLU6)
    assert isinstance(last.conv_pw, nn.Identity) and isinstance(last.bn2, nn.Identity)
    assert not any(isinstance(m, nn.Linear) for m in bb.modules())


def test_shapes_at_224_and_small_input(model, x224):
    with torch.no_grad():
        f = model.backbone.forward_features(x224[:1])
        assert f.shape == (1, 512, 14, 14)
        assert model.patch_extract[:2](f).shape == (1, 256, 4, 4)  # "same" padding: 14 -> 16 -> 4
        assert model.patch_extract(f).shape == (1, 256, 2, 2)  # 4 patch tokens
        assert model.forward_features(torch.randn(1, 3, 96, 96)).shape == (1, 256, 1, 1)
        assert model.forward_head(model.patch_extract(f), pre_logits=True).shape == (1, 32)


def test_full_model_is_batch_independent_at_224(model, x224):
    x2 = x224.clone()
    x2[1:] = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = model(x224)
        torch.testing.assert_close(model(x2)[0], a[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(x224[:1])[0], a[0], rtol=1e-5, atol=1e-5)


def _patch_maps(seed: int, n: int = 4) -> torch.Tensor:
    # Stand-in for trained patch features: at random init the 4 tokens are nearly equal, so attention
    # would look uniform whatever it does.
    return 2 * torch.rand(n, 256, 2, 2, generator=torch.Generator().manual_seed(seed))


def test_tokens_head_attends_over_the_four_patches_of_each_sample(model):
    f = _patch_maps(0)
    with torch.no_grad():
        emb = model.forward_head(f, pre_logits=True)
        # The same computation written out: per-token Dense + ReLU + BN, softmax(scale * T Tᵀ) T, mean.
        t = torch.relu(model.fc(f.flatten(2).transpose(1, 2)))
        bn = model.norm
        t = (t - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        w = (model.attn.scale * t @ t.transpose(1, 2)).softmax(-1)
        assert w.shape == (4, 4, 4)  # [B, N, N]: scores never cross samples
        torch.testing.assert_close(emb, (w @ t).mean(1), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(emb, t.mean(1), atol=1e-4)  # the attention is not a no-op
        f2 = f.clone()
        f2[1:] = _patch_maps(1, 3)
        torch.testing.assert_close(model.forward_head(f2)[0], model.forward_head(f)[0])


def test_batch_mode_reproduces_the_reference_bug(x224):
    torch.manual_seed(0)
    with pytest.warns(UserWarning):
        batch = ferlab.create_model("pattlite", attention_mode="batch").eval()
    none = ferlab.create_model("pattlite", attention_mode="none").eval()
    none.load_state_dict({k: v for k, v in batch.state_dict().items() if k != "attn.scale"})
    f, f2 = _patch_maps(0), _patch_maps(0)
    f2[1:] = _patch_maps(1, 3)
    x = x224[:, :, :112, :112]  # the bug does not need the 2x2 patch grid
    with torch.no_grad():
        # A sample's output depends on the rest of its batch ...
        assert not torch.allclose(batch.forward_head(f2)[0], batch.forward_head(f)[0], atol=1e-4)
        # ... and with a batch of one the attention is the identity.
        torch.testing.assert_close(batch(x[:1]), none(x[:1]), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(batch.forward_head(f[:1]), none.forward_head(f[:1]), rtol=1e-5, atol=1e-5)


def test_timm_backbone_weights_load_by_prefix(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(3)
    src = timm.create_model("mobilenetv1_100", pretrained=False)
    path = tmp_path / "mobilenetv1_100.safetensors"
    save_file(src.state_dict(), str(path))
    dst = ferlab.create_model("pattlite")
    res = load_pretrained(dst, path, prefix="backbone")
    assert res["missing"] == [] and res["loaded"] == len(dst.backbone.state_dict())
    torch.testing.assert_close(dst.backbone.blocks[3][3].conv_dw.weight, src.blocks[3][3].conv_dw.weight)


def test_data_config(model):
    cfg = model.data_config
    assert cfg.input_size == (3, 224, 224) and cfg.color == "rgb"
    assert cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (0.5, 0.5, 0.5)  # MobileNet preprocess_input: [-1, 1]
