"""VGG16 + GCCA + partial decoder + reverse attention: the FER framework of Chen & Chen 2024 (VGG16 + GCCA).

Paper: Jianzeng Chen and Ningning Chen, "A Framework for Facial Expression Recognition Combining
Contextual Information and Attention Mechanism", Journal of Information Processing Systems (JIPS),
DOI 10.3745/JIPS.01.0107 (no arXiv version, no public code). Reported: FER2013 74.08 %, CK+ 98.66 %.

What is implemented (registered as ``vgg16_cara``, "CARA" = Contextual information + Attention, with
Reverse Attention):

* **Backbone** (paper §2.2, Fig. 2): the 13 convolutions of VGG16 (configuration "D", no BatchNorm) built
  with torchvision's ``make_layers`` (``weights=None``), the final max-pool and all FC layers removed. The
  layers keep torchvision's/timm's indices (``features.0`` ... ``features.29``), so a VGG16 state dict
  loads through ``create_model(..., pretrained=path)``.
* **GCCA** (§2.3, Fig. 3, equations 1-2) at the end of each of the five blocks (before its pooling):
  average, max and random (stochastic) pooling give three C-vectors; a grouped 1x1 conv (groups = C)
  fuses the three values of each channel; ReLU; 1x1 conv C -> C/16; ReLU; 1x1 conv C/16 -> C; sigmoid
  = M(F); output F' = M(F) * F + F. Stochastic pooling (Zeiler & Fergus 2013) samples one position per
  channel with probability a_i / sum(a) in training and uses the deterministic probability-weighted mean
  sum(a_i^2) / sum(a) in eval, so eval outputs are deterministic and batch independent.
* **Lateral outputs** of blocks 2-5 (Fig. 2): 1x1 conv-BN-ReLU to 64 channels (C_2 ... C_5 below).
* **Edge conv** (§2.1): a convolution with a single output kernel (3x3, 128 -> 1) on the low-level
  block-2 features gives an edge map E; sigmoid(E) weights the block-2 lateral features.
* **Partial decoder** (§2.4, [23] = Wu et al. CPD, as used in PraNet) over the high-level laterals
  C_3, C_4, C_5 gives the one-channel global map P_d = pd(C_3, C_4, C_5) at block-3 resolution.
* **Reverse attention** (§2.5, equations 3-4), top-down over blocks 5, 4, 3:
  A_i = 1 - sigmoid(U(S_{i+1})), R_i = C_i * A_i (broadcast over channels), S_i = conv(R_i) + U(S_{i+1}),
  starting from S_6 = P_d. U is bilinear resizing to level i's size.
* **Fusion** (§2.1 "multiple features are fused"): per level, the lateral features are pooled with
  their map as spatial weights (edge map for block 2, S_i for blocks 3-5, or P_d when ``ra=False``),
  and the four 64-d vectors are concatenated into the 256-d embedding, followed by dropout and a linear
  classifier.

Switches (table 1 of the paper; the joint island loss of row 6 belongs to the training engine, it uses
``forward_outputs(x)['embedding']``):

=====  ========  =====  =====  =====
row    fusion    gcca   pd     ra
=====  ========  =====  =====  =====
1      False     False  False  False   plain VGG16 backbone, GAP, linear
2      True      False  False  False
3      True      True   False  False
4      True      True   True   False
5, 6   True      True   True   True    (default)
=====  ========  =====  =====  =====

All 16 combinations build. Without ``fusion`` the classifier sees only block 5 (512-d): GAP of block 5
weighted by sigmoid of the last map (S_3 with ``ra``, P_d with ``pd`` only). ``ra`` without ``pd`` starts
the reverse-attention chain from a 1x1 conv map on C_5.

``forward_outputs(x)`` returns ``'logits'``, ``'embedding'`` (the pre-logits vector the island loss
uses, after dropout) and ``'maps'``: ``'edge'`` [B,1,H/2,W/2] (fusion), ``'global'`` = P_d
[B,1,H/4,W/4] (pd), ``'top'`` = S_6 [B,1,H/16,W/16] (ra without pd), ``'side5'``/``'side4'``/``'side3'``
= S_5, S_4, S_3 at H/16, H/8, H/4 (ra). There is no ``'aux_logits'`` (see deviations).

Deviations from the paper (it gives no layer widths, no code, and no statement of how the segmentation
style maps become a class prediction):

1. **Classification read-out (our design).** PraNet's maps are supervised by masks;
   FER has none, so the maps act as spatial attention for pooling, and the "fusion of multiple features"
   is a concatenation of the four pooled lateral vectors. The paper does not say what the classifier
   sees.
2. **No deep supervision / ``aux_logits``.** The paper mentions no side losses; per-level class heads
   would add parameters the paper does not have (and that get no gradient from the main loss).
3. **Widths.** Lateral outputs are 1x1 conv-BN-ReLU to 64 channels (PraNet reduces with RFB blocks to 32);
   the partial decoder is PraNet's aggregation with 64 channels; each reverse-attention branch is two
   3x3 conv-BN-ReLU (64 -> 64) and a 3x3 conv 64 -> 1, applied to the 64-channel lateral features (the
   paper: "erases the presently predicted region from the high-level lateral output features"), not to
   the raw 256/512-channel block outputs as in PraNet.
4. **ReLU in PD/RA convs.** PraNet's ``BasicConv2d`` creates a ReLU but never applies it (issue
   DengPingFan/PraNet#16); here every 3x3 conv of the PD and RA is conv-BN-ReLU (timm ``ConvNormAct``).
5. **Resizing.** Every up-sampling is one bilinear resize (``align_corners=False``) straight to the target
   level's size (PraNet chains fixed 2x up-samplings with ``align_corners=True``); any input side >= 16
   therefore works.
6. **Scales.** Side outputs are taken after each block's last conv (before its pooling) and the last
   pool is removed, so blocks 3/4/5 are at 1/4, 1/8, 1/16 of the input (1/8, 1/16, 1/32 would hold
   with the pools kept).
7. **Edge conv.** Kernel size 3 (the paper says only "a single kernel"); its map is not supervised (no
   edge labels); it weights the block-2 lateral features, which is our reading of "edge features ... as
   constraints".
8. **GCCA details.** Bias terms in G, W1 and W2 are assumed; GCCA sits at the end of each block, before
   the pooling. The Fig. 2/3 captions mention CBAM and "SENet ... max pooling"; we follow the text and
   equations 1-2. Random pooling is read as stochastic pooling; activations are clamped at 0 (they are
   post-ReLU anyway).
9. **Row 1 ("original VGG16").** Built as the same truncated backbone with global average pooling and a
   linear classifier instead of VGG16's 4096-4096 FC head, so table-1 rows differ only by the switched
   components.
10. **Dropout.** The paper's rate 0.001 (``drop_rate`` switch), placed before the classifier (the paper
    does not say where).
11. **Input.** The paper resizes MTCNN face crops to 224x224; VGG16 takes 3 channels, so the registered
    default is (3, 224, 224) RGB with ImageNet normalisation (grayscale FER2013 is replicated to 3
    channels by the transform). ``in_chans=1`` works; then a 3-channel pretrained first conv is summed over
    RGB by ``load_pretrained`` (timm's ``adapt_input_conv``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn
from torchvision.models.vgg import cfgs as _vgg_cfgs
from torchvision.models.vgg import make_layers

from ._base import FERModel
from ._registry import register_model

__all__ = ["GCCA", "VGG16CARA", "PartialDecoder", "ReverseAttention", "stochastic_pool2d"]


def _resize(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to the spatial size of ``ref`` (no-op if already equal)."""
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def stochastic_pool2d(x: torch.Tensor, training: bool, eps: float = 1e-6) -> torch.Tensor:
    """Global stochastic pooling (Zeiler & Fergus 2013) of a non-negative map, per sample and channel.

    Args:
        x: [B, C, H, W]; negative values are treated as 0.
        training: sample one position with probability p_i = a_i / sum(a) (the gradient flows to the
            picked position, as in max pooling); otherwise return the expectation sum(p_i * a_i).
        eps: guards the division for all-zero channels (which pool to 0).

    Returns:
        [B, C, 1, 1].
    """
    a = x.clamp_min(0).flatten(2)  # [B, C, N]
    if not training:
        return ((a * a).sum(-1) / a.sum(-1).clamp_min(eps))[..., None, None]
    cdf = a.cumsum(-1)
    u = torch.rand_like(cdf[..., -1:]) * cdf[..., -1:]
    idx = (cdf < u).sum(-1, keepdim=True).clamp_max(a.shape[-1] - 1)
    return a.gather(-1, idx)[..., None]


class GCCA(nn.Module):
    """Group convolutional channel attention (Chen & Chen 2024 (VGG16 + GCCA), §2.3, equations 1-2).

    M(F) = sigmoid(W2(relu(W1(relu(G([avg; max; rdm])))))); output F' = M(F) * F + F.
    G is a grouped 1x1 conv (groups = C) that fuses the three pooled values of each channel.

    Args:
        channels: C.
        reduction: bottleneck ratio (C / 16 in the paper).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        rd = max(1, channels // reduction)
        self.fuse = nn.Conv2d(3 * channels, channels, 1, groups=channels)
        self.fc1 = nn.Conv2d(channels, rd, 1)
        self.fc2 = nn.Conv2d(rd, channels, 1)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """M(F): [B, C, 1, 1] channel weights in (0, 1)."""
        avg = x.mean((2, 3), keepdim=True)
        mx = x.amax((2, 3), keepdim=True)
        rdm = stochastic_pool2d(x, self.training)
        # interleave per channel -> [B, 3C, 1, 1] ordered (c0: avg, max, rdm), (c1: ...), for groups=C
        d = torch.stack((avg, mx, rdm), dim=2).flatten(1, 2)
        return torch.sigmoid(self.fc2(F.relu(self.fc1(F.relu(self.fuse(d))))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x) + x


class PartialDecoder(nn.Module):
    """Partial decoder of CPD/PraNet over three levels (deepest first), giving a 1-channel map.

    With x1 the deepest, x2 the middle and x3 the shallowest level (``ch`` channels each), U a bilinear
    resize to the target level and every conv a 3x3 conv-BN-ReLU:
    x2' = conv1(U(x1)) * x2; x3' = conv2(U(x1)) * conv3(U(x2)) * x3;
    y2 = cat2([x2', conv4(U(x1))]); y3 = cat3([x3', conv5(U(y2))]); out = 1x1 conv(conv6(y3)) at x3's size.
    """

    def __init__(self, ch: int = 64) -> None:
        super().__init__()
        self.conv_up1 = ConvNormAct(ch, ch, 3)
        self.conv_up2 = ConvNormAct(ch, ch, 3)
        self.conv_up3 = ConvNormAct(ch, ch, 3)
        self.conv_up4 = ConvNormAct(ch, ch, 3)
        self.conv_up5 = ConvNormAct(2 * ch, 2 * ch, 3)
        self.conv_cat2 = ConvNormAct(2 * ch, 2 * ch, 3)
        self.conv_cat3 = ConvNormAct(3 * ch, 3 * ch, 3)
        self.conv_out = ConvNormAct(3 * ch, 3 * ch, 3)
        self.proj = nn.Conv2d(3 * ch, 1, 1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor) -> torch.Tensor:
        x1_2, x1_3 = _resize(x1, x2), _resize(x1, x3)
        x2_ = self.conv_up1(x1_2) * x2
        x3_ = self.conv_up2(x1_3) * self.conv_up3(_resize(x2, x3)) * x3
        y2 = self.conv_cat2(torch.cat((x2_, self.conv_up4(x1_2)), 1))
        y3 = self.conv_cat3(torch.cat((x3_, self.conv_up5(_resize(y2, x3))), 1))
        return self.proj(self.conv_out(y3))


class ReverseAttention(nn.Module):
    """One reverse-attention step (Chen & Chen 2024 (VGG16 + GCCA) equations 3-4; PraNet).

    A = 1 - sigmoid(U(S_coarse)); R = C * A; S = conv(R) + U(S_coarse).
    """

    def __init__(self, ch: int = 64, mid: int = 64) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvNormAct(ch, mid, 3), ConvNormAct(mid, mid, 3))
        self.proj = nn.Conv2d(mid, 1, 3, padding=1)

    @staticmethod
    def weight(coarse: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """A_i = 1 - sigmoid(U(S_{i+1})), [B, 1, H_i, W_i] (equation 4)."""
        return 1 - torch.sigmoid(_resize(coarse, feat))

    def forward(self, feat: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        r = feat * self.weight(coarse, feat)  # equation 3, broadcast over channels
        return self.proj(self.convs(r)) + _resize(coarse, feat)


class VGG16CARA(FERModel):
    """VGG16 with GCCA, lateral outputs, partial decoder and reverse attention (Chen & Chen 2024).

    Args:
        num_classes: classifier width.
        in_chans: input channels (VGG16 and its pretrained weights use 3).
        fusion: multi-level fusion (block-2 edge-weighted + blocks 3-5 laterals); else block 5 only.
        gcca: a GCCA module at the end of each of the five blocks.
        pd: partial decoder over blocks 3-5 giving the global map P_d.
        ra: reverse attention refining blocks 5, 4, 3.
        lateral_chs: width of the lateral outputs, the decoder and the reverse-attention branches.
        drop_rate: dropout before the classifier (0.001 in the paper).
    """

    gradcam_layer = "gcca.4"

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 3,
        fusion: bool = True,
        gcca: bool = True,
        pd: bool = True,
        ra: bool = True,
        lateral_chs: int = 64,
        drop_rate: float = 0.001,
    ) -> None:
        super().__init__()
        self.fusion, self.use_gcca, self.use_pd, self.use_ra = fusion, gcca, pd, ra
        features = make_layers(_vgg_cfgs["D"], batch_norm=False)
        layers = list(features)[:-1]  # drop the last max-pool; indices stay torchvision's/timm's
        if in_chans != 3:
            layers[0] = nn.Conv2d(in_chans, layers[0].out_channels, 3, padding=1)
        self.features = nn.Sequential(*layers)
        # index of the last ReLU of each block (the layer before each pool, and the last layer)
        pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
        self.block_ends = (*(i - 1 for i in pools), len(layers) - 1)
        self.block_chs = tuple(layers[i - 1].out_channels for i in self.block_ends)  # 64,128,256,512,512
        self.gcca = nn.ModuleList(GCCA(c) if gcca else nn.Identity() for c in self.block_chs)

        c = lateral_chs
        if fusion:
            self.edge = nn.Conv2d(self.block_chs[1], 1, 3, padding=1)
            self.lateral2 = ConvNormAct(self.block_chs[1], c, 1)
        if fusion or pd or ra:
            self.lateral3 = ConvNormAct(self.block_chs[2], c, 1)
            self.lateral4 = ConvNormAct(self.block_chs[3], c, 1)
            self.lateral5 = ConvNormAct(self.block_chs[4], c, 1)
        if pd:
            self.decoder = PartialDecoder(c)
        elif ra:
            self.top = nn.Conv2d(c, 1, 1)
        if ra:
            self.ra5, self.ra4, self.ra3 = ReverseAttention(c), ReverseAttention(c), ReverseAttention(c)

        self.num_classes = num_classes
        self.num_features = 4 * c if fusion else self.block_chs[4]
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the five blocks (after GCCA, before pooling): strides 1, 2, 4, 8, 16."""
        outs, b = [], 0
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self.block_ends[b]:
                x = self.gcca[b](x)
                outs.append(x)
                b = min(b + 1, len(self.block_ends) - 1)
        return outs

    def forward_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The pooled, fused feature vector and the named side maps (logit maps, 1 channel)."""
        _, c2, c3, c4, c5 = self.forward_blocks(x)
        maps: dict[str, torch.Tensor] = {}
        if not (self.fusion or self.use_pd or self.use_ra):
            return c5.mean((2, 3)), maps
        f3, f4, f5 = self.lateral3(c3), self.lateral4(c4), self.lateral5(c5)
        level_maps: list[torch.Tensor | None] = [None, None, None]  # for f3, f4, f5
        last: torch.Tensor | None = None
        if self.use_pd:
            last = maps["global"] = self.decoder(f5, f4, f3)
            level_maps = [last, last, last]
        if self.use_ra:
            s = last if last is not None else self.top(f5)
            if last is None:
                maps["top"] = s
            s5 = maps["side5"] = self.ra5(f5, s)
            s4 = maps["side4"] = self.ra4(f4, s5)
            s3 = maps["side3"] = self.ra3(f3, s4)
            level_maps, last = [s3, s4, s5], s3
        if not self.fusion:
            return (c5 * torch.sigmoid(_resize(last, c5))).mean((2, 3)), maps
        e = maps["edge"] = self.edge(c2)
        pooled = [(self.lateral2(c2) * torch.sigmoid(e)).mean((2, 3))]
        for f, m in zip((f3, f4, f5), level_maps):
            pooled.append((f if m is None else f * torch.sigmoid(_resize(m, f))).mean((2, 3)))
        return torch.cat(pooled, 1), maps

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_maps(x)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x)
        return x if pre_logits else self.head(x)

    def forward_outputs(self, x: torch.Tensor) -> dict:
        feat, maps = self.forward_maps(x)
        emb = self.forward_head(feat, pre_logits=True)
        return {"logits": self.head(emb), "embedding": emb, "maps": maps}


@register_model(paper="002: VGG16+GCCA+PD+RA (Chen & Chen, JIPS)", input_size=(3, 224, 224), test_size=32)
def vgg16_cara(
    num_classes: int = 7,
    in_chans: int = 3,
    img_size: int = 224,
    fusion: bool = True,
    gcca: bool = True,
    pd: bool = True,
    ra: bool = True,
    drop_rate: float = 0.001,
    **kwargs,
) -> VGG16CARA:
    """VGG16 (no last pool/FC) + GCCA + lateral fusion + partial decoder + reverse attention (Chen & Chen 2024)."""
    return VGG16CARA(num_classes, in_chans, fusion=fusion, gcca=gcca, pd=pd, ra=ra, drop_rate=drop_rate)
