"""PAtt-Lite: truncated MobileNetV1, a patch extraction block and an attention classifier.

Paper: J. L. Ngwe, K. M. Lim, C. P. Lee, T. S. Ong, "PAtt-Lite: Lightweight Patch and Attention MobileNet for
Challenging Facial Expression Recognition", IEEE Access 2024, arXiv:2306.09626. Reviewed in Berindeie 2024 (FER ensembles) of
ferlab's specification (A. Berindeie, "Ensemble Models For Facial Emotion Recognition", 2024, section 5.1).
Official code: github.com/JLREx/PAtt-Lite (Keras notebook, MIT). The layer list describes
that notebook, read, not copied.

Architecture (input 3x224x224 RGB scaled to [-1, 1]):

* **Backbone:** MobileNetV1 (alpha 1, timm ``mobilenetv1_100``, built with ``pretrained=False``) cut where the
  reference cuts Keras' MobileNet (``layers[-29]`` = ``conv_dw_9_relu``): the stem conv and depthwise-separable
  blocks 1-8 whole, then only the depthwise 3x3 + BN + ReLU6 half of block 9 (its pointwise conv is dropped).
  Output 512x14x14 for a 224 input; 812,352 parameters. The submodule ``backbone`` keeps timm's key names,
  so ImageNet weights of ``mobilenetv1_100`` load with ``load_pretrained(model, file, prefix="backbone")``.
* **Patch extraction** (no BN): separable conv 512->256, kernel 4, stride 4, TF-"same" padding (14 -> 4; the
  paper's "padded to 16x16"), ReLU; separable conv 256->256, kernel 2, stride 2, "valid", ReLU (4 -> 2);
  1x1 conv 256->256, ReLU. The separable convs are timm's ``SeparableConv2d`` (bias-free depthwise, biased
  pointwise, like Keras' ``SeparableConv2D``). The result is the 256x2x2 map of "patches".
* **Attention classifier:** dropout -> Dense 256->32 + ReLU -> BatchNorm(32) -> dot-product self-attention
  without Q/K/V projections and with one learnable scalar scale (Keras ``Attention(use_scale=True)``) ->
  dropout -> Dense 32->``num_classes``.

**Attention runs within each sample (ferlab's fix).** In the reference, the attention layer receives the
globally pooled (batch, 32) matrix, so its "sequence" is the mini-batch: the score matrix is B x B and every
sample's feature becomes a softmax-weighted mix of the other samples in its batch (JLREx/PAtt-Lite #6, #13;
Berindeie 2024 (FER ensembles) section 6.3.2). Predictions then depend on what else is in the batch, and batch evaluation leaks
information across test samples. ferlab's default ``attention_mode="tokens"`` instead treats the 2x2 patch
map of one sample as a sequence of 4 tokens: each token goes through the same dropout/Dense/ReLU/BN as the
reference's pooled vector, the tokens attend to each other (4x4 scores per sample, same scalar scale), and
the attended tokens are averaged into the 32-d embedding. Global average pooling thus moves from before the
Dense layer to after the attention; the parameters are exactly the reference's. Switches:

* ``attention_mode="tokens"`` (default): per-sample attention over the patch tokens, batch independent.
* ``attention_mode="batch"``: the reference's cross-batch attention, kept **only** to reproduce published
  numbers; it warns on construction and fails ferlab's batch-independence check. With a batch of one it is
  the identity, i.e. equal to ``"none"``.
* ``attention_mode="none"``: ablation without the attention layer (GAP -> Dense -> BN -> classifier).

Parameter count (PyTorch count, trainable parameters): ``1,092,769 + 33 * num_classes``, i.e. **1,093,000**
for 7 classes in the ``tokens`` and ``batch`` modes (``none``: one fewer, the attention scale). Adding the
BatchNorm running mean/variance (what Keras' ``count_params`` includes) gives 1,102,664, the paper's
"1.10 M". About 0.67 GFLOPs per 224x224 face (one multiply-add counted as two FLOPs).

Deviations from the paper:

* Attention within each sample instead of across the batch (see above); ``attention_mode="batch"`` restores
  the reference behaviour.
* Backbone from timm: BN epsilon 1e-5 (Keras MobileNet: 1e-3) and symmetric padding for the stride-2 convs
  (Keras pads bottom/right only); both matter only when porting Keras weights, not for the layer list.
* The notebook stores faces at 120x120 and resizes them to 224 inside the model, followed by RandomFlip,
  RandomContrast(0.3) and MobileNet's ``preprocess_input`` layers; ferlab's transform resizes straight to
  ``img_size``, normalises with mean/std 0.5 (the same [-1, 1] scaling) and does augmentation itself.
* Fine-tuning ("phase 2") in the reference rebuilds the head with dropout 0.2 (instead of 0.1) before the
  Dense layer, a Dropout(0.2) after the attention and a SpatialDropout2D(0.2) after patch extraction: here
  these are the switches ``drop_rate``, ``attn_drop_rate`` and ``spatial_drop_rate`` (defaults = phase 1).
* The output is logits; the reference's softmax lives in the loss.
* The patch extraction uses TF-"same" padding computed from the actual input, so other input sizes work:
  the backbone map has side ceil(s/16); sides s = 65-192 give a single 1x1 patch (attention over one token
  is then the identity), s = 193-320 the paper's 2x2 patch grid (224 native). Below 65 the model fails.
* ``backbone_stride`` (ferlab switch for small inputs; default 16 = the paper): 8 removes the stride of the
  stem conv, 4 also that of block 2's depthwise conv. FER2013's 48 px faces upsampled to 64 with stride 4
  give the paper's 16x16 backbone map and 2x2 patch grid at 1/12 of the 224 px cost of the stem; the
  layers and parameters are unchanged (ferlab's CPU-scale FER2013 recipe, ``configs/pattlite/fer2013_cpu.yaml``).
* Training recipe (not part of the model): phase 1 trains the head with the backbone frozen (Adam 1e-3,
  clipnorm 3, batch 8, balanced class weights, early stopping); phase 2 fine-tunes at 1e-5 with inverse-time
  decay, BN kept frozen.
"""

from __future__ import annotations

import warnings

import timm
import torch
from timm.layers import SeparableConv2d
from torch import nn

from ..errors import ConfigError
from ._base import FERModel
from ._registry import register_model

__all__ = ["DotProductSelfAttention", "PAttLite", "truncated_mobilenetv1"]

ATTENTION_MODES = ("tokens", "batch", "none")


BACKBONE_STRIDES = (16, 8, 4)


def truncated_mobilenetv1(in_chans: int = 3, output_stride: int = 16) -> nn.Module:
    """timm ``mobilenetv1_100`` (random init) cut after block 9's depthwise conv + BN + ReLU6 (512 channels).

    timm groups MobileNetV1's 13 depthwise-separable blocks into stages of 1, 2, 2, 6 and 2 blocks, so Keras'
    block 9 is ``blocks[3][3]``. The returned module is timm's ``EfficientNet`` with the later blocks, the
    head conv and the classifier removed; its ``forward_features`` yields the 512-channel map (stride 16).
    ``output_stride`` 8 sets the stem conv's stride to 1; 4 also block 2's depthwise conv (small inputs).
    """
    if output_stride not in BACKBONE_STRIDES:
        raise ConfigError(
            f"backbone_stride={output_stride!r}; valid: {', '.join(map(str, BACKBONE_STRIDES))}"
        )
    m = timm.create_model("mobilenetv1_100", pretrained=False, in_chans=in_chans, num_classes=0)
    m.blocks = m.blocks[:4]
    m.blocks[3] = m.blocks[3][:4]
    m.blocks[3][3].conv_pw = nn.Identity()
    m.blocks[3][3].bn2 = nn.Identity()
    m.conv_head, m.bn2 = nn.Identity(), nn.Identity()
    m.num_features = m.head_hidden_size = 512
    if output_stride <= 8:
        m.conv_stem.stride = (1, 1)
    if output_stride <= 4:
        m.blocks[1][0].conv_dw.stride = (1, 1)
    return m


class DotProductSelfAttention(nn.Module):
    """Keras-style dot-product self-attention: no projections, ``softmax(scale * x xᵀ) x``, learnable scale.

    Attention runs over the second-to-last axis of ``x`` (``[..., N, D]``). Fed a ``[B, D]`` matrix this is
    the reference PAtt-Lite's cross-batch attention; fed ``[B, N, D]`` it attends within each sample.
    """

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = (self.scale * (x @ x.transpose(-2, -1))).softmax(-1)
        return attn @ x


class PAttLite(FERModel):
    """PAtt-Lite (Ngwe et al., IEEE Access 2024) with per-sample attention by default.

    Args:
        num_classes: number of expression classes.
        in_chans: input channels.
        attention_mode: ``"tokens"`` (per-sample attention over the patch tokens), ``"batch"`` (the
            reference's cross-batch attention; reproduction only) or ``"none"`` (no attention layer).
        patch_dim: channels of the patch extraction block (256).
        embed_dim: width of the Dense layer before the attention, i.e. the embedding (32).
        drop_rate: dropout before the Dense layer (0.1 in phase 1, 0.2 in phase 2 of the reference).
        attn_drop_rate: dropout after the attention (0 in phase 1, 0.2 in phase 2).
        spatial_drop_rate: channel dropout on the patch map (0 in phase 1, 0.2 in phase 2).
        backbone_stride: 16 (the paper), 8 or 4 (fewer stride-2 layers, for small inputs).
    """

    gradcam_layer = "patch_extract"

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 3,
        attention_mode: str = "tokens",
        patch_dim: int = 256,
        embed_dim: int = 32,
        drop_rate: float = 0.1,
        attn_drop_rate: float = 0.0,
        spatial_drop_rate: float = 0.0,
        backbone_stride: int = 16,
    ):
        super().__init__()
        if attention_mode not in ATTENTION_MODES:
            raise ConfigError(f"attention_mode={attention_mode!r}; valid: {', '.join(ATTENTION_MODES)}")
        if attention_mode == "batch":
            warnings.warn(
                "PAtt-Lite attention_mode='batch' reproduces the reference's attention across the batch axis: "
                "a sample's prediction depends on the rest of its batch. Use it only to reproduce published "
                "numbers.",
                UserWarning,
                stacklevel=2,
            )
        self.attention_mode = attention_mode
        self.backbone = truncated_mobilenetv1(in_chans, backbone_stride)
        c = self.backbone.num_features
        self.patch_extract = nn.Sequential(
            SeparableConv2d(c, patch_dim, 4, stride=4, padding="same", bias=True),
            nn.ReLU(inplace=True),
            SeparableConv2d(patch_dim, patch_dim, 2, stride=2, padding="valid", bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(patch_dim, patch_dim, 1),
            nn.ReLU(inplace=True),
        )
        self.spatial_drop = nn.Dropout2d(spatial_drop_rate)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(patch_dim, embed_dim)
        self.act = nn.ReLU(inplace=True)
        self.norm = nn.BatchNorm1d(embed_dim)
        self.attn = DotProductSelfAttention() if attention_mode != "none" else nn.Identity()
        self.attn_drop = nn.Dropout(attn_drop_rate)
        self.num_classes, self.num_features = num_classes, embed_dim
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The patch map [B, 256, h, w] (2x2 for a 224 input)."""
        return self.patch_extract(self.backbone.forward_features(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.spatial_drop(x)
        if self.attention_mode == "tokens":
            t = x.flatten(2).transpose(1, 2)  # [B, N, C]: one token per patch
            t = self.act(self.fc(self.drop(t)))
            t = self.norm(t.transpose(1, 2)).transpose(1, 2)
            x = self.attn(t).mean(1)  # attention over the N patches of each sample, then pool
        else:
            x = self.norm(self.act(self.fc(self.drop(x.mean((2, 3))))))
            x = self.attn(x)  # "batch": [B, 32] -> a B x B score matrix (the reference bug); "none": identity
        x = self.attn_drop(x)
        return x if pre_logits else self.head(x)


@register_model(
    paper="004: PAtt-Lite (Ngwe et al., IEEE Access 2024)",
    input_size=(3, 224, 224),
    color="rgb",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    test_size=96,
)
def pattlite(
    num_classes: int = 7,
    in_chans: int = 3,
    img_size: int = 224,
    attention_mode: str = "tokens",
    drop_rate: float = 0.1,
    attn_drop_rate: float = 0.0,
    spatial_drop_rate: float = 0.0,
    backbone_stride: int = 16,
    **kwargs,
) -> PAttLite:
    """PAtt-Lite: truncated MobileNetV1 + patch extraction + attention classifier (per-sample), 1.09 M params."""
    return PAttLite(
        num_classes,
        in_chans,
        attention_mode=attention_mode,
        drop_rate=drop_rate,
        attn_drop_rate=attn_drop_rate,
        spatial_drop_rate=spatial_drop_rate,
        backbone_stride=backbone_stride,
    )
