"""Standard ImageNet-style baselines: VGG16/19, ResNet18/34, CBAM-ResNet18/34/50 and MobileNet V1.

Papers:

* VGG -- K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
  ICLR 2015, arXiv:1409.1556. Chen & Chen 2024 (VGG16+GCCA+PD+RA) builds on VGG16 and reports the
  plain VGG16 as "model 1" of its ablation; the Residual Masking Network README (the ensemble Berindeie 2024 (FER ensembles)
  reuses) lists VGG19 at 70.80 % on FER2013.
* ResNet -- K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
  arXiv:1512.03385. Chen et al. 2024 (GCLENet) uses ResNet34 as its baseline (21.29 M parameters, 7 classes);
  Berindeie's (2024) ensemble has a "ResNet" member (73.14 %).
* CBAM -- S. Woo, J. Park, J.-Y. Lee, I. S. Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
  arXiv:1807.06521. Berindeie, "Ensemble Models For Facial Emotion Recognition" (2024), §6.3.2, keeps
  the top three models of the Residual Masking Network ensemble: RMN 74.14 %, "Cbam_Resnet" 73.34 % and
  "ResNet" 73.14 %. The RMN code (``models/__init__.py``) builds that member as pytorchcv's
  ``cbam_resnet50`` with a new 2048->7 linear layer; its README reports CBAM-ResNet50 at 73.39 %.
* MobileNet V1 -- A. G. Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile
  Vision Applications", arXiv:1704.04861. PAtt-Lite (surveyed by Berindeie 2024) cuts a Keras MobileNet V1;
  Berindeie 2024 (FER ensembles) also tried MobileNet V1/V2/V3 backbones.

What is implemented: :class:`TimmFERNet`, one generic wrapper that turns a timm classification network
(always built with ``pretrained=False``) into a :class:`~ferlab.models._base.FERModel`:

* the timm network's trunk modules are adopted **as direct children with timm's own names**
  (``conv1``, ``layer1`` ... ``layer4`` for ResNet; ``features`` + ``pre_logits`` for VGG;
  ``conv_stem``, ``bn1``, ``blocks`` ... for MobileNet), so a timm/ImageNet state dict loads with
  ``create_model(..., pretrained=path)``. timm's classifier (``fc`` / ``head.fc`` / ``classifier``) and
  pooling are dropped and replaced by ``self.head``; an ImageNet classifier is therefore never loaded.
* ``forward_features`` runs the trunk and returns the **unpooled** map; ``forward_head`` applies VGG's
  fc6/fc7 (``pre_logits``, identity for the others), global average pooling, dropout and the linear head.
* ``gradcam_layer``: ``features`` (VGG, the map after the last max-pool), ``layer4`` (ResNets), ``blocks``
  (MobileNet).

Registered models (parameter counts with 7 classes; ImageNet totals with 1000 classes for comparison):

=================  ==============  ===============================================================
name               7 classes       1000 classes (= the published/reference total)
=================  ==============  ===============================================================
``vgg16``          134,289,223     138,357,544 (torchvision / timm ``vgg16``, "138 M" in the paper)
``vgg19``          139,598,919     143,667,240 (torchvision / timm ``vgg19``, "144 M")
``resnet18``       11,180,103      11,689,512 (torchvision / timm ``resnet18``)
``resnet34``       21,288,263      21,797,672 (torchvision / timm ``resnet34``)
``cbam_resnet18``  11,269,983      11,779,392 (pytorchcv; CBAM paper Table 4: 11.78 M)
``cbam_resnet34``  21,451,059      21,960,468 (pytorchcv; CBAM paper: 21.96 M)
``cbam_resnet50``  26,054,967      28,089,624 (pytorchcv; CBAM paper: 28.09 M)
``mobilenet_v1``   3,214,151       4,231,976 (timm ``mobilenetv1_100``; Keras ``MobileNet``: 4.25 M
                                   with BN moving statistics; paper: 4.2 M)
=================  ==============  ===============================================================

FLOPs per image (``torch.utils.flop_counter``, 2 per multiply-add) at 3x224x224 / 1x48x48: vgg16 30.9 /
1.64 G, vgg19 39.3 / 2.03 G, resnet18 3.63 / 0.19 G, resnet34 7.33 / 0.38 G (3.66 G multiply-adds, the
"3678 M FLOPs" of Chen et al. 2024 (GCLENet)), cbam_resnet18 3.63 / 0.19 G, cbam_resnet34 7.33 / 0.38 G, cbam_resnet50
8.19 / 0.43 G, mobilenet_v1 1.14 / 0.057 G.

Input: the native input is 3x224x224 RGB. Every model also runs on small grayscale faces through
``create_model(name, in_chans=1, img_size=48)``: the first convolution is built for ``in_chans``
channels, global average pooling makes the head size-independent, and the smallest valid side is 32
(five stride-2 stages). At 48x48 the last maps are 512x1x1 (VGG: fc6's 7x7 kernel then sees the 1x1 map
average-pool-upsampled to 7x7, exactly as torchvision's ``AdaptiveAvgPool2d((7, 7))`` does), 512x2x2
(ResNet18/34), 2048x2x2 (ResNet50) and 1024x2x2 (MobileNet).

Deviations from the paper:

* **VGG fc6/fc7 as convolutions.** timm's layout (fc6 = 7x7 conv 512->4096, fc7 = 1x1 conv) is used instead
  of linear layers. It has exactly the same parameters (and ImageNet weights map one-to-one); on maps
  larger than 7x7 it would be applied convolutionally, so we average-pool its output globally. Dropout
  0.5 after fc6 and fc7 as in the VGG paper (timm's default is 0). ``batch_norm=True`` gives the
  ``vgg*_bn`` variants (not in the paper; they train far more easily from scratch).
* **ResNet init.** timm initialises the last BN gamma of every residual block to zero (``zero_init_last``);
  torchvision's default does not. Irrelevant once weights are loaded.
* **CBAM placement and MLP.** timm's :class:`~timm.layers.CbamModule` sits on the residual branch after the
  last BN and before the addition (the CBAM paper's Fig. 3, and pytorchcv's ``CbamResUnit``), reduction
  16, 7x7 spatial conv (no bias) + BN. We pass ``mlp_bias=True`` (timm's default is ``False``) so that the
  shared channel MLP has biases as in pytorchcv and the counts match the CBAM paper to the parameter;
  ``mlp_bias=False`` gives timm's variant (2,040 / 4,012 / 16,048 fewer parameters). The spatial gate
  concatenates (mean, max) where pytorchcv has (max, mean): a weight-layout difference only.
* **CBAM-ResNet depth.** Berindeie 2024 (FER ensembles) does not say which depth its "Cbam_Resnet" is; the RMN ensemble it takes
  the member from uses CBAM-ResNet50, so ``cbam_resnet50`` is registered too; ``cbam_resnet18`` and
  ``cbam_resnet34`` are the lighter variants. pytorchcv ends with a fixed 7x7 average pool (224 input
  only); we pool globally, identical at 224. Berindeie 2024 (FER ensembles) does not name the depth of its "ResNet" member
  either (RMN's ensemble holds ResNet18, a VGGFace2 ResNet50 and ResNet101); ``resnet18`` / ``resnet34``
  are provided.
* **MobileNet V1** is timm's ``mobilenetv1_100`` (ReLU6, BN eps 1e-5, symmetric padding). Keras' version
  (used by PAtt-Lite) has BN eps 1e-3, TensorFlow "same" padding on stride-2 convs and a 1x1-conv
  classifier; the layer list and parameter count are the same. Head dropout 1e-3 as in Keras.
  Normalisation mean = std = 0.5 (inputs in [-1, 1]) like Keras' ``preprocess_input`` and timm's
  ``mobilenetv1_100`` weights, not ImageNet mean/std.
* **Input channels.** With ``in_chans != 3`` the first convolution is built for that many channels; a
  3-channel ImageNet stem in a ``pretrained`` file is adapted to it by ``load_pretrained`` (timm's
  ``adapt_input_conv``: summed over RGB for one channel).
* **No weights are downloaded.** ``pretrained`` in ``create_model`` takes a local state-dict file in timm's
  key layout (e.g. a timm ImageNet checkpoint); the classifier is not loaded (ours is named ``head``).
"""

from __future__ import annotations

from functools import partial

import timm
import torch
from timm.layers.cbam import CbamModule
from torch import nn

from ..errors import ConfigError
from ._base import FERModel
from ._registry import register_model

__all__ = ["TimmFERNet"]

MIN_SIZE = 32  # five stride-2 stages


class TimmFERNet(FERModel):
    """A timm classification network as a FER model: timm's trunk, our pooling/dropout/linear head.

    The trunk modules become direct children under timm's names (so timm state dicts load unchanged);
    timm's ``global_pool`` and classifier are dropped. A module named ``pre_logits`` (VGG's fc6/fc7) runs
    in :meth:`forward_head` before pooling.

    Args:
        arch: timm architecture name (``resnet18``, ``vgg16``, ``mobilenetv1_100`` ...).
        num_classes: classifier outputs.
        in_chans: input channels (the first convolution is built for them).
        drop_rate: dropout before the classifier (and, for VGG, after fc6).
        gradcam_layer: dotted name of the module whose output is the last spatial feature map.
        **timm_kwargs: further arguments for ``timm.create_model`` (e.g. ``block_args``).
    """

    def __init__(
        self,
        arch: str,
        num_classes: int = 7,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        gradcam_layer: str = "",
        **timm_kwargs,
    ) -> None:
        super().__init__()
        net = timm.create_model(
            arch, pretrained=False, num_classes=0, in_chans=in_chans, drop_rate=drop_rate, **timm_kwargs
        )
        classifier = net.pretrained_cfg.get("classifier", "fc").split(".")[0]
        self.arch = arch
        self.trunk_names: tuple[str, ...] = ()
        self.pre_logits: nn.Module = nn.Identity()
        trunk = []
        for name, module in net.named_children():
            if name in (classifier, "global_pool"):
                continue
            if name == "pre_logits":
                self.pre_logits = module
                continue
            self.add_module(name, module)
            trunk.append(name)
        self.trunk_names = tuple(trunk)
        self.gradcam_layer = gradcam_layer
        self.num_classes = num_classes
        self.num_features = int(getattr(net, "head_hidden_size", None) or net.num_features)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled trunk features [B, C, H/32, W/32] (the same tensor as timm's ``forward_features``)."""
        for name in self.trunk_names:
            x = self._modules[name](x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(VGG fc6/fc7 ->) global average pool -> dropout -> linear; ``pre_logits`` stops before the linear."""
        x = self.pre_logits(x).mean((2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)


def _check_size(img_size: int) -> None:
    if img_size < MIN_SIZE:
        raise ConfigError(f"img_size={img_size} is too small for this network (minimum {MIN_SIZE})")


def _vgg(depth: int, num_classes: int, in_chans: int, img_size: int, drop_rate: float, batch_norm: bool):
    _check_size(img_size)
    arch = f"vgg{depth}_bn" if batch_norm else f"vgg{depth}"
    return TimmFERNet(arch, num_classes, in_chans, drop_rate=drop_rate, gradcam_layer="features")


def _resnet(
    depth: int, num_classes: int, in_chans: int, img_size: int, drop_rate: float, cbam: bool, mlp_bias: bool
):
    _check_size(img_size)
    kw = {"block_args": {"attn_layer": partial(CbamModule, mlp_bias=mlp_bias)}} if cbam else {}
    return TimmFERNet(
        f"resnet{depth}", num_classes, in_chans, drop_rate=drop_rate, gradcam_layer="layer4", **kw
    )


@register_model(
    paper="baseline: VGG (Simonyan & Zisserman, ICLR 2015)", input_size=(3, 224, 224), test_size=32
)
def vgg16(
    num_classes: int = 7,
    in_chans: int = 3,
    img_size: int = 224,
    drop_rate: float = 0.5,
    batch_norm: bool = False,
    **kwargs,
):
    """VGG16 (13 conv + fc6/fc7 4096 + linear), 134.3 M params; the Chen & Chen 2024 (VGG16 + GCCA) backbone baseline."""
    return _vgg(16, num_classes, in_chans, img_size, drop_rate, batch_norm)


@register_model(
    paper="baseline: VGG (Simonyan & Zisserman, ICLR 2015)", input_size=(3, 224, 224), test_size=32
)
def vgg19(
    num_classes: int = 7,
    in_chans: int = 3,
    img_size: int = 224,
    drop_rate: float = 0.5,
    batch_norm: bool = False,
    **kwargs,
):
    """VGG19 (16 conv + fc6/fc7 4096 + linear), 139.6 M params; an RMN-README baseline."""
    return _vgg(19, num_classes, in_chans, img_size, drop_rate, batch_norm)


@register_model(paper="baseline: ResNet (He et al., CVPR 2016)", input_size=(3, 224, 224), test_size=64)
def resnet18(num_classes: int = 7, in_chans: int = 3, img_size: int = 224, drop_rate: float = 0.0, **kwargs):
    """ResNet18 (BasicBlocks [2, 2, 2, 2]), 11.18 M params."""
    return _resnet(18, num_classes, in_chans, img_size, drop_rate, cbam=False, mlp_bias=False)


@register_model(paper="baseline: ResNet (He et al., CVPR 2016)", input_size=(3, 224, 224), test_size=64)
def resnet34(num_classes: int = 7, in_chans: int = 3, img_size: int = 224, drop_rate: float = 0.0, **kwargs):
    """ResNet34 (BasicBlocks [3, 4, 6, 3]), 21.29 M params; the Chen et al. 2024 (GCLENet) baseline."""
    return _resnet(34, num_classes, in_chans, img_size, drop_rate, cbam=False, mlp_bias=False)


@register_model(paper="004: CBAM-ResNet (Woo et al., ECCV 2018)", input_size=(3, 224, 224), test_size=64)
def cbam_resnet18(
    num_classes: int = 7,
    in_chans: int = 3,
    img_size: int = 224,
    drop_rate: float = 0.0,
    mlp_bias: bool = True,
    **kwargs,
):
    """ResNet18 with a CBAM module in every BasicBlock, 11.27 M params."""
    return _resnet(18, num_classes, in_chans, img_size, drop_rate, cbam=True, mlp_bias=mlp_bias)


@register_model(paper="004: CBAM-ResNet (Woo et al., ECCV 2018)", input_size=(3, 224, 224), test_size=64)
def cbam_resnet34(
    num_classes: int = 7,
    in_chans: int = 3,
    img_size: int = 224,
    drop_rate: float = 0.0,
    mlp_bias: bool = True,
    **kwargs,
):
    """ResNet34 with a CBAM module in every BasicBlock, 21.45 M params."""
    return _resnet(34, num_classes, in_chans, img_size, drop_rate, cbam=True, mlp_bias=mlp_bias)


@register_model(paper="004: CBAM-ResNet (Woo et al., ECCV 2018)", input_size=(3, 224, 224), test_size=64)
def cbam_resnet50(
    num_classes: int = 7,
    in_chans: int = 3,
    img_size: int = 224,
    drop_rate: float = 0.0,
    mlp_bias: bool = True,
    **kwargs,
):
    """ResNet50 with a CBAM module in every Bottleneck, 26.05 M params; the RMN / Berindeie 2024 (FER ensembles) ensemble member."""
    return _resnet(50, num_classes, in_chans, img_size, drop_rate, cbam=True, mlp_bias=mlp_bias)


@register_model(
    paper="baseline: MobileNetV1 (Howard et al., 2017)",
    input_size=(3, 224, 224),
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    test_size=64,
)
def mobilenet_v1(
    num_classes: int = 7, in_chans: int = 3, img_size: int = 224, drop_rate: float = 1e-3, **kwargs
):
    """MobileNet V1 (alpha 1.0, 13 depthwise-separable blocks), 3.21 M params."""
    _check_size(img_size)
    return TimmFERNet("mobilenetv1_100", num_classes, in_chans, drop_rate=drop_rate, gradcam_layer="blocks")
