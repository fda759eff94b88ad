"""Residual Masking Network (RMN) for facial expression recognition.

Paper: L. Pham, T. H. Vu, T. A. Tran, "Facial Expression Recognition Using Residual Masking Network",
ICPR 2020 (pp. 4513-4519, 2021). No arXiv version. Official code: github.com/phamquiluan/ResidualMaskingNetwork
(MIT); surveyed in Berindeie, "Ensemble Models For Facial Emotion Recognition" (2024), §5.2. Layer
lists and counts below are read from the official code.

What is implemented:

* A ResNet34 trunk (timm ``resnet34``, ``pretrained=False``; BasicBlocks [3, 4, 6, 3], 7x7 stride-2 stem
  and 3x3 max-pool) at 3x224x224 input.
* Four *residual masking blocks*: after ResNet stage ``i`` (widths 64/128/256/512 at 56/28/14/7 px for a
  224 input) a masking block ``M_i`` -- a U-Net of depth 4/3/2/1 built from ResNet BasicBlocks -- scores
  the stage output ``F`` and the block returns ``F * (1 + M_i(F))`` (the paper's attention-residual
  learning, Eq. 1: ``F + F ⊗ M``), so a mask can only re-weight features, never erase them.
* U-Net (:class:`MaskingBlock`) of width ``C`` and depth ``d``: an encoder of BasicBlocks ``C -> 2C -> ...
  -> 2^d C`` (each with a 1x1 conv + BN projection shortcut) with 2x2 max-pooling between them; a decoder
  that, per level, up-samples with a 2x2 stride-2 transposed conv (+BN+ReLU) halving the width,
  concatenates the matching encoder output and fuses it with a BasicBlock that halves the width; a last
  BasicBlock ``2C -> C``; and a softmax over channels (values in [0, 1]). Depth 1 is just
  BasicBlock ``C -> 2C`` then ``2C -> C``. Kaiming init, the last BN gamma of every BasicBlock in a mask
  at zero.
* Head: global average pooling -> dropout(0.4) -> linear. This is the reference's
  ``resmasking_dropout1``, the variant shipped in the pip package ``rmn``; ``drop_rate=0`` gives the plain
  ``resmasking`` variant (same parameters).

Parameters (7 classes, PyTorch count): **137,796,423** -- trunk + head 21,288,263, masks 32,366,080 /
31,885,312 / 29,965,312 / 22,291,456, identical to the official code's count. The paper's Table III
states **142.9 M**; the ~5.1 M gap is not explained by the code (BN buffers add only ~78 k), so we follow
the code. About 21.9 G multiply-adds (43.8 GFLOPs) per 224x224 image, 3.7 G of them in the trunk.

Deviations from the paper:

* **Parameter count** 137.8 M (the official code) instead of the paper's 142.9 M (see above).
* **Input channels.** ``in_chans`` is honoured (timm builds the stem for it); the reference ignores its
  ``in_channels`` argument and is always 3-channel. At ``in_chans=3`` nothing changes.
* **Pre-processing.** As in the reference, the input is only scaled to [0, 1] (``mean=0, std=1``, no
  ImageNet normalisation). The reference feeds grayscale faces replicated to 3 channels; we declare the
  model ``rgb`` (on FER2013 the two are identical because its images are gray).
* **Trunk init.** The reference copies torchvision's ResNet (``zero_init_residual=False``), so we pass
  ``zero_init_last=False`` to timm. ImageNet weights (which the authors used for their 74.14 %, issue #7)
  load into the ``backbone`` sub-module with ``load_pretrained(model, path, prefix="backbone")``, since the
  trunk keeps torchvision/timm key names.
* **Mask activation.** The paper only says the mask is in [0, 1]; the code uses a channel softmax (so the
  C values at each pixel sum to 1, mean 1/C, i.e. ``1 + M`` is close to 1). Kept as the default; a
  ``mask_act='sigmoid'`` switch gives the per-element reading (the reference's commented-out
  alternative).
* **Ablation switch** ``masking=False`` drops the four masks, leaving the plain ResNet34 baseline the
  paper compares against (72.42 % in the official README).
* **Input sizes.** The U-Nets need the stage-1 map (``ceil(img_size / 4)``) divisible by 8; any multiple
  of 32 works (224 is the native size). Other sizes are rejected at construction.
* Training recipe (RAdam, ReduceLROnPlateau, 10-crop TTA, 7-model ensemble) is not part of the model.
"""

from __future__ import annotations

import math

import timm
import torch
from timm.models.resnet import BasicBlock
from torch import nn

from ..errors import ConfigError
from ._base import FERModel
from ._registry import register_model

__all__ = ["MaskingBlock", "ResMaskingNet", "ResidualMask"]

_STAGE_WIDTHS = (64, 128, 256, 512)
_MASK_DEPTHS = (4, 3, 2, 1)


def _basic_block(cin: int, cout: int) -> BasicBlock:
    """A stride-1 ResNet BasicBlock ``cin -> cout`` with a 1x1 conv + BN projection shortcut."""
    proj = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
    return BasicBlock(cin, cout, downsample=proj)


class MaskingBlock(nn.Module):
    """U-Net masking branch of the RMN: maps ``[B, C, H, W]`` to a mask of the same shape in [0, 1].

    Args:
        channels: width ``C`` of the feature map it scores.
        depth: number of encoder levels (the encoder goes ``C -> 2C -> ... -> 2^depth C``).
        act: ``'softmax'`` (over channels, as the reference) or ``'sigmoid'`` (per element).
    """

    def __init__(self, channels: int, depth: int, act: str = "softmax") -> None:
        super().__init__()
        if act not in ("softmax", "sigmoid"):
            raise ConfigError(f"mask_act={act!r} is not valid; valid: sigmoid, softmax")
        self.act = act
        widths = [channels * 2**i for i in range(depth + 1)]  # C, 2C, ..., 2^d C
        self.pool = nn.MaxPool2d(2)
        self.encoder = nn.ModuleList(_basic_block(widths[i], widths[i + 1]) for i in range(depth))
        # Decoder levels run from the deepest up: level i takes 2^(i+1) C to 2^i C (i = depth-1 .. 1).
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose2d(w, w // 2, 2, stride=2), nn.BatchNorm2d(w // 2), nn.ReLU(inplace=True)
            )
            for w in reversed(widths[2:])
        )
        self.decoder = nn.ModuleList(_basic_block(w, w // 2) for w in reversed(widths[2:]))
        self.final = _basic_block(widths[1], widths[0])
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, BasicBlock):
                m.zero_init_last()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        for up, block, skip in zip(self.up, self.decoder, reversed(skips[:-1])):
            x = block(torch.cat([up(x), skip], dim=1))
        x = self.final(x)
        return x.softmax(dim=1) if self.act == "softmax" else x.sigmoid()


class ResidualMask(nn.Module):
    """Attention-residual masking of a stage output: ``F -> F * (1 + M(F))`` (paper Eq. 1)."""

    def __init__(self, channels: int, depth: int, act: str = "softmax") -> None:
        super().__init__()
        self.mask = MaskingBlock(channels, depth, act)

    def forward(self, x: torch.Tensor, return_mask: bool = False):
        m = self.mask(x)
        out = x * (1.0 + m)
        return (out, m) if return_mask else out


class ResMaskingNet(FERModel):
    """ResNet34 with a residual masking block after each of its four stages.

    Args:
        num_classes: number of expression classes.
        in_chans: input channels (3 in the reference).
        img_size: square input side; the stage-1 map ``ceil(img_size / 4)`` must be divisible by 8.
        drop_rate: dropout before the classifier (0.4 = reference ``resmasking_dropout1``).
        mask_act: ``'softmax'`` over channels (reference) or ``'sigmoid'``.
        masking: ``False`` removes the masks (plain ResNet34 baseline).
    """

    gradcam_layer = "masks.3"

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 3,
        img_size: int = 224,
        drop_rate: float = 0.4,
        mask_act: str = "softmax",
        masking: bool = True,
    ) -> None:
        super().__init__()
        s1 = math.ceil(math.ceil(img_size / 2) / 2)
        if masking and s1 % 2 ** (max(_MASK_DEPTHS) - 1):
            raise ConfigError(
                f"resmasking: img_size={img_size} is not valid; the U-Net masks need a multiple of 32 (e.g. 224)"
            )
        self.backbone = timm.create_model(
            "resnet34",
            pretrained=False,
            num_classes=0,
            global_pool="",
            in_chans=in_chans,
            zero_init_last=False,
        )
        self.masks = (
            nn.ModuleList(ResidualMask(c, d, mask_act) for c, d in zip(_STAGE_WIDTHS, _MASK_DEPTHS))
            if masking
            else None
        )
        if not masking:
            self.gradcam_layer = "backbone.layer4"
        self.num_classes = num_classes
        self.num_features = _STAGE_WIDTHS[-1]
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes)

    def _stages(self) -> list[nn.Module]:
        b = self.backbone
        return [b.layer1, b.layer2, b.layer3, b.layer4]

    def _forward(self, x: torch.Tensor, maps: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        b = self.backbone
        x = b.maxpool(b.act1(b.bn1(b.conv1(x))))  # [B, 64, H/4, W/4]
        for i, stage in enumerate(self._stages()):
            x = stage(x)
            if self.masks is not None:
                if maps is None:
                    x = self.masks[i](x)
                else:
                    x, maps[f"mask{i + 1}"] = self.masks[i](x, return_mask=True)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The masked stage-4 map ``[B, 512, H/32, W/32]``."""
        return self._forward(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x.mean((2, 3)))
        return x if pre_logits else self.head(x)

    def forward_outputs(self, x: torch.Tensor) -> dict:
        """Logits, embedding and ``maps['mask1'..'mask4']`` (the four masks, same shapes as the stages)."""
        maps: dict[str, torch.Tensor] = {}
        emb = self.forward_head(self._forward(x, maps), pre_logits=True)
        out = {"logits": self.classify(emb), "embedding": emb}
        if maps:
            out["maps"] = maps
        return out


@register_model(
    paper="004: Residual Masking Network (Pham et al., ICPR 2020)",
    input_size=(3, 224, 224),
    color="rgb",
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    test_size=32,
)
def resmasking(
    num_classes: int = 7,
    in_chans: int = 3,
    img_size: int = 224,
    drop_rate: float = 0.4,
    mask_act: str = "softmax",
    masking: bool = True,
    **kwargs,
) -> ResMaskingNet:
    """Residual Masking Network: ResNet34 + 4 U-Net residual masking blocks, 137.8 M params, 224x224."""
    return ResMaskingNet(num_classes, in_chans, img_size, drop_rate, mask_act, masking)
