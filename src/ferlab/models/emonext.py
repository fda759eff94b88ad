"""EmoNeXt: an adapted ConvNeXt for facial emotion recognition.

Paper: Y. El Boudouri, A. Bohi, "EmoNeXt: an Adapted ConvNeXt for Facial Emotion Recognition", IEEE MMSP
2023; arXiv 2501.08199. Official code: github.com/yelboudouri/EmoNeXt (no licence file; not copied).
Surveyed in Berindeie, "Ensemble Models For Facial Emotion Recognition" (2024), §5.5. Layer lists
and counts below are read from the official code.

What is implemented (one class, five registered sizes ``emonext_tiny`` ... ``emonext_xlarge`` = the
official ConvNeXt T/S/B/L/XL configurations), for 3x224x224 input:

* **Spatial transformer** on the raw image, before the stem: a localisation net (7x7 conv ``C -> 8``, BN,
  2x2 max-pool, ReLU, 5x5 conv ``8 -> 10``, BN, 2x2 max-pool, ReLU; 10x52x52 at 224 px), a regressor
  (FC ``-> 32``, ReLU, FC ``32 -> 6``, starting at the identity transform) and bilinear resampling with
  ``affine_grid`` / ``grid_sample`` (``align_corners=True``).
* **ConvNeXt trunk** from timm (``convnext_<size>``, ``pretrained=False``, drop-path 0.1), with a
  **squeeze-and-excitation block** (reduction 16, no biases; timm ``SEModule``) appended to each of the
  three between-stage down-sampling layers (LayerNorm -> 2x2 stride-2 conv -> SE), i.e. on the output of
  each stage as it enters the next, as in the reference. The stem and the blocks have no SE.
* **Head**: global average pooling -> LayerNorm -> linear (the ConvNeXt head). The embedding is the
  normalised pooled vector.
* **Self-attention regulariser** ``L_SA``: a LayerNorm and query/key projections (``D -> D``, with bias),
  scores scaled by ``D^(-1/4)`` as in the reference, softmax; the term is the mean squared deviation of the
  attention weights from their mean, ``mean((W - mean(W))^2)``. It is returned per sample by
  ``forward_outputs(x)['attn_reg']`` (shape ``[B]``); the training loss is
  ``CE(label_smoothing=0.2) + lambda * attn_reg.mean()`` (``lambda = 1`` in the reference code). It does not
  affect the logits, so ``forward`` skips it.

Parameters (7 classes, PyTorch count, at 224 px): tiny 29,973,739; small 51,608,299; base 90,715,659;
large 202,221,643; xlarge 358,115,979. The official code's counts are 590,592 / 590,592 /
1,049,600 / 2,360,832 / 4,196,352 larger: exactly its unused value projection (see below). Compute
(``forward``, multiply-adds counted once, 224 px): tiny 4.53 G, small 8.76 G, base 15.43 G, large 34.44 G,
xlarge 61.00 G; the regulariser adds 0.06-0.41 G.

Deviations from the paper:

* **Per-sample attention (the main fix).** The reference applies its attention to the pooled ``[B, D]``
  batch, so the "sequence" it attends over is the mini-batch: ``W`` is ``B x B``, a sample's regulariser
  depends on its batch-mates and is 0 at batch size 1. Here the attention runs *within each sample*,
  over the ``H x W`` spatial tokens of the last ConvNeXt stage (7x7 = 49 tokens at 224 px), giving one
  ``N x N`` matrix and one regulariser value per sample. The paper's intent (an attention-balance term
  that makes the features compact) is kept; the numbers differ from the reference's.
* **No value projection.** The reference computes ``V`` and the attended output and then discards them;
  only ``W`` enters the loss. Those parameters would never get a gradient, so they are left out
  (``D^2 + D`` fewer parameters than the reference).
* **Attention scale** ``D^(-1/4)`` instead of the usual ``D^(-1/2)``: kept as in the reference.
* The STN's sampling grid is computed with a matmul (:func:`affine_grid`, same values as
  ``F.affine_grid``) so that the model exports to ONNX opset 17.
* **STN for any size.** The reference hard-wires the regressor to 224 px (FC 27,040 -> 32); we size it
  from ``img_size`` (identical at 224, so the counts above hold only at 224). ``in_chans`` is honoured
  by the STN and the stem (the reference's STN is always 3-channel).
* **Pre-processing.** As in the reference, only scaling to [0, 1] (``mean=0, std=1``); the reference
  converts faces to grayscale and replicates them to 3 channels, we declare the model ``rgb`` (identical
  on FER2013, whose images are gray). Resize 236 -> crop 224 and TenCrop testing are data/evaluation
  settings, not part of the model.
* **ImageNet weights** are not loaded (no downloads). A timm-format ConvNeXt checkpoint loads into the
  ``backbone`` sub-module with ``load_pretrained(model, path, prefix="backbone")`` (the official
  Facebook files need timm's key remapping first); as in the reference (``strict=False``), the SE blocks,
  STN, regulariser and classifier then keep their fresh initialisation.
* **Ablation switches** (not in the reference): ``stn``, ``se`` and ``attn_reg`` remove the STN, the SE
  blocks or the regulariser's parameters and output.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from timm.layers import SEModule
from torch import nn

from ..errors import ConfigError
from ._base import FERModel
from ._registry import register_model

__all__ = ["EmoNeXt", "SelfAttentionRegularizer", "SpatialTransformer", "affine_grid"]


def _trunc_normal_init(module: nn.Module) -> None:
    """The reference's init for the modules it adds: truncated normal (std 0.02) weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, (B, C, height, width), align_corners=True)`` written with a matmul.

    Same values for ``height, width >= 2``; written out because ``F.affine_grid`` has no ONNX export before
    opset 20 (and ``torch.linspace`` exports in float64).
    """

    def coords(n: int) -> torch.Tensor:  # n >= 2 points spanning [-1, 1]
        return torch.arange(n, dtype=theta.dtype, device=theta.device) * (2.0 / (n - 1)) - 1.0

    gx, gy = coords(width).expand(height, width), coords(height)[:, None].expand(height, width)
    base = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).view(1, height * width, 3)  # (x, y, 1)
    return (base @ theta.transpose(1, 2)).view(-1, height, width, 2)


class SpatialTransformer(nn.Module):
    """Affine spatial transformer applied to the input image (Jaderberg et al., 2015).

    Args:
        in_chans: image channels.
        img_size: square input side; fixes the width of the regressor's first layer.
    """

    def __init__(self, in_chans: int = 3, img_size: int = 224) -> None:
        super().__init__()
        side = ((img_size - 6) // 2 - 4) // 2  # 7x7 valid conv, pool 2, 5x5 valid conv, pool 2
        if side < 1:
            raise ConfigError(
                f"emonext: img_size={img_size} is too small for the spatial transformer (>= 18)"
            )
        self.localization = nn.Sequential(
            nn.Conv2d(in_chans, 8, kernel_size=7),
            nn.BatchNorm2d(8),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 10, kernel_size=5),
            nn.BatchNorm2d(10),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
        )
        self.regressor = nn.Sequential(
            nn.Linear(10 * side * side, 32), nn.ReLU(inplace=True), nn.Linear(32, 6)
        )
        _trunc_normal_init(self)
        nn.init.zeros_(self.regressor[2].weight)  # start at the identity transform
        with torch.no_grad():
            self.regressor[2].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.regressor(self.localization(x).flatten(1)).view(-1, 2, 3)
        return F.grid_sample(x, affine_grid(theta, x.shape[-2], x.shape[-1]), align_corners=True)


class SelfAttentionRegularizer(nn.Module):
    """EmoNeXt's attention-balance term, computed within each sample over a set of tokens.

    ``W = softmax(q k^T * D^(-1/4))`` with ``q, k`` linear maps of the layer-normed tokens; the term is
    ``mean((W - mean(W))^2)`` over each sample's ``N x N`` matrix.

    Args:
        dim: token width ``D``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.scale = dim**-0.25  # the reference's scale (not dim**-0.5)
        _trunc_normal_init(self)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens [B, N, D]`` -> (regulariser ``[B]``, attention weights ``[B, N, N]``)."""
        t = self.norm(tokens)
        attn = (self.query(t) @ self.key(t).transpose(1, 2) * self.scale).softmax(dim=-1)
        reg = (attn - attn.mean((1, 2), keepdim=True)).pow(2).mean((1, 2))
        return reg, attn


class EmoNeXt(FERModel):
    """STN -> ConvNeXt with SE after each down-sampling -> GAP + LayerNorm -> linear; plus ``attn_reg``.

    Args:
        variant: timm ConvNeXt name (``convnext_tiny`` ... ``convnext_xlarge``).
        num_classes: number of expression classes.
        in_chans: input channels.
        img_size: square input side (224 in the reference).
        stn: use the spatial transformer.
        se: append SE blocks to the three down-sampling layers.
        attn_reg: build the self-attention regulariser (``forward_outputs(x)['attn_reg']``).
        drop_path_rate: stochastic depth, linearly increasing over the blocks.
    """

    gradcam_layer = "backbone.stages.3"

    def __init__(
        self,
        variant: str = "convnext_tiny",
        num_classes: int = 7,
        in_chans: int = 3,
        img_size: int = 224,
        stn: bool = True,
        se: bool = True,
        attn_reg: bool = True,
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        if img_size < 32:
            raise ConfigError(f"emonext: img_size={img_size} is too small (ConvNeXt has stride 32; >= 32)")
        self.stn = SpatialTransformer(in_chans, img_size) if stn else None
        self.backbone = timm.create_model(
            variant, pretrained=False, num_classes=0, in_chans=in_chans, drop_path_rate=drop_path_rate
        )
        if se:
            for stage in self.backbone.stages[1:]:
                width = stage.downsample[-1].out_channels
                block = SEModule(width, rd_channels=width // 16, bias=False)
                _trunc_normal_init(block)
                stage.downsample.append(block)
        self.num_classes = num_classes
        self.num_features = self.backbone.num_features
        self.attention = SelfAttentionRegularizer(self.num_features) if attn_reg else None
        self.head = nn.Linear(self.num_features, num_classes)
        _trunc_normal_init(self.head)

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.stn is not None:
            x = self.stn(x)
        return x, self.backbone.forward_features(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last ConvNeXt stage map ``[B, D, H/32, W/32]`` of the STN-warped input."""
        return self._trunk(x)[1]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.backbone.forward_head(x, pre_logits=True)  # GAP + LayerNorm -> [B, D]
        return x if pre_logits else self.head(x)

    def forward_outputs(self, x: torch.Tensor) -> dict:
        """Logits, embedding, per-sample ``attn_reg`` ``[B]`` and ``maps`` (``'stn'``: the warped input,
        ``'attn'``: the ``[B, N, N]`` spatial attention weights)."""
        warped, feats = self._trunk(x)
        emb = self.forward_head(feats, pre_logits=True)
        out: dict = {"logits": self.classify(emb), "embedding": emb}
        maps = {"stn": warped} if self.stn is not None else {}
        if self.attention is not None:
            out["attn_reg"], maps["attn"] = self.attention(feats.flatten(2).transpose(1, 2))
        if maps:
            out["maps"] = maps
        return out


def _emonext(variant: str, num_classes: int, in_chans: int, img_size: int, **switches) -> EmoNeXt:
    return EmoNeXt(f"convnext_{variant}", num_classes, in_chans, img_size, **switches)


_CFG = dict(
    paper="004: EmoNeXt (El Boudouri & Bohi, MMSP 2023)",
    input_size=(3, 224, 224),
    color="rgb",
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    test_size=64,
)


def _register(variant: str, doc: str, **cfg) -> None:
    """Register ``emonext_<variant>``: one entrypoint per size, all with the same switches."""

    def entry(
        num_classes: int = 7, in_chans: int = 3, img_size: int = 224, stn: bool = True, se: bool = True,
        attn_reg: bool = True, drop_path_rate: float = 0.1,
    ) -> EmoNeXt:  # fmt: skip
        return _emonext(
            variant,
            num_classes,
            in_chans,
            img_size,
            stn=stn,
            se=se,
            attn_reg=attn_reg,
            drop_path_rate=drop_path_rate,
        )

    entry.__name__ = entry.__qualname__ = f"emonext_{variant}"
    entry.__doc__ = doc
    globals()[entry.__name__] = register_model(**{**_CFG, **cfg})(entry)


_register("tiny", "EmoNeXt-Tiny: STN + ConvNeXt-T (3-3-9-3, 96-768) + SE, 30.0 M params, 224x224.")
_register("small", "EmoNeXt-Small: STN + ConvNeXt-S (3-3-27-3, 96-768) + SE, 51.6 M params, 224x224.")
_register("base", "EmoNeXt-Base: STN + ConvNeXt-B (3-3-27-3, 128-1024) + SE, 90.7 M params, 224x224.")
_register("large", "EmoNeXt-Large: STN + ConvNeXt-L (3-3-27-3, 192-1536) + SE, 202.2 M params, 224x224.")
_register(
    "xlarge",
    "EmoNeXt-XLarge: STN + ConvNeXt-XL (3-3-27-3, 256-2048) + SE, 358.1 M params, 224x224.",
    test_size=32,
)
