"""GCLENet (LSDC-FER): ResNet34 with local feature enhancement and multi-scale global association.

Paper: Z. Chen, L. Yan, H. Wang, B. Adamyk, "Improved Facial Expression Recognition Algorithm Based on Local
Feature Enhancement and Global Information Association", *Electronics* 13(14):2813, 2024
(doi:10.3390/electronics13142813; no arXiv version, no public code). ACmix: X. Pan et al., "On the
Integration of Self-Attention and Convolution", CVPR 2022 (arXiv:2111.14556).

What is implemented (registry name ``gclenet``; switches ``lfa`` and ``mgc`` give the four rows of the
paper's table 5):

* **Backbone**: torchvision ResNet34 (``weights=None``), with the torchvision attribute names (``conv1``,
  ``bn1``, ``layer1``..``layer4``) so ImageNet ResNet34 weights load with :func:`ferlab.models.load_pretrained`.
  The classifier is ``head`` (global average pooling, then a linear layer).
* **LFA (local feature enhancement)**, on the stem map F (64x56x56 at 224 px; after the 7x7 conv and the
  max pool). F is cut into four spatial quadrants (28x28 each at 224 px). Each quadrant has its **own**
  pair of asymmetric convolution blocks (ACB, ACNet-style: parallel 3x3, 1x3 and 3x1 convs, each followed by
  its own BatchNorm, summed; paper eq. 1), with a ReLU between the two. The four outputs are put back in
  place and added to the global features as a residual.
* **MGC (multi-scale global association)**, also on F. It is built as a residual block: a 3x3 conv-BN-ReLU,
  then the multi-scale convolution of eq. 2 (channels split into 4 groups that go through 1x1, 3x3,
  3x3∘3x3 and 3x3∘3x3∘3x3 conv-BN-ReLU stacks, then concatenated), then ACmix (shared 1x1 q/k/v
  projections feeding a 7x7 local self-attention path and a "shift" convolution path, mixed as
  α·attention + β·convolution with learnable α, β initialised to 0.5), then BN, the identity shortcut
  and ReLU.
* **Fusion**: ``F' = ReLU(G + L)`` where G is the MGC output (or F itself when ``mgc=False``) and L the
  re-assembled LFA map; F' goes on to ``layer1``. With both switches off the network is plain ResNet34.
* :meth:`GCLENet.fuse` (alias :meth:`GCLENet.reparameterize`) folds every ACB (three conv+BN branches) into
  one 3x3 conv with bias, the inference form of the paper's figure 3b. Eval outputs do not change.

Parameter counts (7 classes; the paper's figure 14 reports thop counts of the **test-time** model):

=====================  ==============  ==============  ======================================
model                  training form   fused (test)    paper (fig. 14 / sec. 4.5)
=====================  ==============  ==============  ======================================
baseline ResNet34      21,288,263      21,288,263      21.29 M
+LFA                   21,782,855      21,583,687      21.58 M (LFA +0.29 M)
+MGC                   21,357,509      21,357,509      MGC +0.07 M
full (LFA + MGC)       21,852,101      21,652,933      --
=====================  ==============  ==============  ======================================

How the paper's numbers were read:

* **0.29 M is the LFA, in its fused (test-time) form.** Section 4.5 says the LFA adds "four sets of
  convolutional layers", each quadrant's ``c``-channel map going through two ``k x k`` layers, and that the
  complexity is analysed "during the testing phase". 4 quadrants x 2 fused 3x3 64->64 convs =
  294,912 weights (295,424 with the fused biases) = 0.29 M, and the total becomes 21.58 M as the paper says.
  The training form (8 ACBs with three BN'd branches each) has 494,592 parameters. The FLOPs agree: at
  28x28, 8 such convs are 231.2 M multiply-adds; the paper's +232.82 M (3678.23 -> 3911.05 M) is exactly that
  plus 8 BatchNorms as thop counts them.
* **0.07 M is the MGC, at 64 channels on the 56x56 map.** The MGC's multi-scale convs and ACmix alone come
  to only 32,126 parameters at 64 channels. The paper says it takes inspiration from MA-Net (Zhao et al.,
  IEEE TIP 2021), whose multi-scale block starts with a full 3x3 conv before splitting the channels. With
  that 3x3 conv-BN, the MGC has 69,246 parameters = 0.07 M. Counted the way thop counts (convs, BN, softmax)
  it costs 224.93 M at 224 px, so the MGC-only model comes to 3903.16 M. As far as the garbled text can be
  read, the paper gives 3905.07 M (+226.84 M), 0.8 % more. A module of ~0.07 M parameters only costs that
  much at 56x56, so the MGC sits on the stem map next to the LFA, not deeper in the network.
* The baseline 21.29 M is torchvision ResNet34 with a 7-class fc (21,288,263), and the thop-convention
  FLOPs of that model at 224 px are exactly the paper's 3678.23 M.

Deviations from the paper (or places where the paper is silent):

* **Topology of the two modules.** Figure 2 is not in the text we have. We read "the local feature maps
  are merged into the global features as residuals" and "the local features ... are fused with the global
  features" as both modules reading F in parallel, with the LFA output added to the MGC output. Sequential
  LFA -> MGC would have the same parameter count.
* **MGC internals**: the leading 3x3 conv-BN-ReLU (MA-Net) is our reading of the 0.07 M, not stated in
  the paper. Also ours: BN + ReLU after every multi-scale conv, BN after ACmix, and the identity shortcut
  (so that, as in the paper's table 7, ACmix and the multi-scale conv each stand where a 3x3 conv of a
  basic block would be). The channel groups are independent (eq. 2), not Res2Net-style hierarchical.
* **ACmix** follows the ResNet variant of the ACmix code (Pan et al., "On the Integration of Self-Attention and
  Convolution", CVPR 2022): 4 heads, 7x7 attention window with
  reflection padding and a learned 1x1 position encoding of a [-1, 1] coordinate grid, 3x3 shift
  convolution initialised as shift kernels, stride 1 only. The grouped shift conv has no bias, which is
  what the reference code ends up with (its bias is silently dropped) and gives the documented 17,822
  parameters; a BN follows, so a bias would be redundant anyway. The reflection padding needs a stem map of
  at least 4x4 (input >= 16 px).
* **LFA internals**: ReLU between the two ACBs and after the fusion sum (paper silent). The paper's
  test-time thop count implies a BatchNorm after each folded conv. Ours folds everything into one conv with
  bias (ACNet deploy form), so the fused LFA counts 295,424 parameters and 231.2 M multiply-adds. The
  quadrants are cut at ``ceil(H/2)`` and ``ceil(W/2)``, so odd map sizes work (top/left quadrants one pixel
  larger). Each quadrant is convolved with zero padding at its own borders, as separate crops would be.
* No dropout before the classifier (paper silent). Training recipe (pre-training on CAER-S/FED-RO/AffectNet,
  SGD with lr 0.05) is the trainer's business, not the model's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from timm.layers import ConvNormAct
from torch import nn

from ..errors import ConfigError
from ._base import FERModel
from ._registry import register_model

__all__ = ["ACmix", "AsymConvBlock", "GCLENet", "LocalFeatureEnhancement", "MultiScaleGlobalAssociation"]


def _fold_bn(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a bias-free conv followed by ``bn`` (eval statistics) as one conv."""
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    return weight * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class AsymConvBlock(nn.Module):
    """ACNet asymmetric convolution block: 3x3, 1x3 and 3x1 conv+BN branches, summed (paper eq. 1).

    :meth:`fuse` replaces the three branches by one equivalent 3x3 conv with bias (inference form).
    """

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.in_chs, self.out_chs = in_chs, out_chs
        self.square = nn.Conv2d(in_chs, out_chs, (3, 3), padding=(1, 1), bias=False)
        self.square_bn = nn.BatchNorm2d(out_chs)
        self.hor = nn.Conv2d(in_chs, out_chs, (1, 3), padding=(0, 1), bias=False)
        self.hor_bn = nn.BatchNorm2d(out_chs)
        self.ver = nn.Conv2d(in_chs, out_chs, (3, 1), padding=(1, 0), bias=False)
        self.ver_bn = nn.BatchNorm2d(out_chs)
        self.fused: nn.Conv2d | None = None

    @property
    def is_fused(self) -> bool:
        return self.fused is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(x)
        return self.square_bn(self.square(x)) + self.hor_bn(self.hor(x)) + self.ver_bn(self.ver(x))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the three conv+BN branches (with the BN running statistics) into one 3x3 conv with bias."""
        if self.fused is not None:
            return
        w, b = _fold_bn(self.square.weight, self.square_bn)
        wh, bh = _fold_bn(self.hor.weight, self.hor_bn)
        wv, bv = _fold_bn(self.ver.weight, self.ver_bn)
        # A 1x3 kernel with padding (0, 1) is the middle row of a 3x3 kernel with padding 1; likewise 3x1.
        w = w + F.pad(wh, (0, 0, 1, 1)) + F.pad(wv, (1, 1, 0, 0))
        conv = nn.Conv2d(self.in_chs, self.out_chs, 3, padding=1, bias=True).to(w)
        conv.weight.copy_(w)
        conv.bias.copy_(b + bh + bv)
        for name in ("square", "square_bn", "hor", "hor_bn", "ver", "ver_bn"):
            delattr(self, name)
        self.fused = conv


LFA_CONVS = ("acb", "3x3")


def _conv_bn(chs: int, k: int) -> nn.Sequential:
    """A plain k x k conv + BN (what table 6's first two rows and table 7's ablated rows use)."""
    return nn.Sequential(nn.Conv2d(chs, chs, k, padding=k // 2, bias=False), nn.BatchNorm2d(chs))


class LocalFeatureEnhancement(nn.Module):
    """LFA local branch: four spatial quadrants, each through its own ACB -> ReLU -> ACB, re-assembled.

    Returns the local map only; the caller adds it to the global features as a residual.
    Quadrants are cut at ``ceil(H/2)``, ``ceil(W/2)`` (order: top-left, top-right, bottom-left,
    bottom-right), so any map of at least 2x2 works.
    """

    def __init__(self, chs: int = 64, num_blocks: int = 2, split: bool = True, conv: str = "acb") -> None:
        super().__init__()
        if conv not in LFA_CONVS:
            raise ConfigError(f"lfa_conv={conv!r}; valid: {', '.join(LFA_CONVS)}")
        self.split = split
        self.quadrants = nn.ModuleList()
        for _ in range(4 if split else 1):
            layers: list[nn.Module] = []
            for i in range(num_blocks):
                if i:
                    layers.append(nn.ReLU(inplace=True))
                layers.append(AsymConvBlock(chs, chs) if conv == "acb" else _conv_bn(chs, 3))
            self.quadrants.append(nn.Sequential(*layers))

    @staticmethod
    def split_sizes(h: int, w: int) -> tuple[int, int]:
        """Row and column where the map is cut: the top/left quadrants take the extra pixel of odd sizes."""
        return (h + 1) // 2, (w + 1) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.split:  # table 6, rows 1 and 3: the whole map through one stack
            return self.quadrants[0](x)
        h0, w0 = self.split_sizes(x.shape[-2], x.shape[-1])
        parts = (x[..., :h0, :w0], x[..., :h0, w0:], x[..., h0:, :w0], x[..., h0:, w0:])
        tl, tr, bl, br = (f(p) for f, p in zip(self.quadrants, parts))
        return torch.cat((torch.cat((tl, tr), dim=3), torch.cat((bl, br), dim=3)), dim=2)


class MultiScaleConv(nn.Module):
    """Paper eq. 2: split channels into ``num_groups``; group 1 -> 1x1 conv, group i -> (i-1) stacked 3x3
    convs (receptive fields 1, 3, 5, 7 for 4 groups); concatenate. Every conv is conv-BN-ReLU."""

    def __init__(self, chs: int = 64, num_groups: int = 4) -> None:
        super().__init__()
        if chs % num_groups:
            raise ValueError(f"channels {chs} not divisible into {num_groups} groups")
        self.width = chs // num_groups
        branches = [ConvNormAct(self.width, self.width, 1)]
        for i in range(1, num_groups):
            branches.append(nn.Sequential(*(ConvNormAct(self.width, self.width, 3) for _ in range(i))))
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = torch.split(x, self.width, dim=1)
        return torch.cat([b(g) for b, g in zip(self.branches, groups)], dim=1)


class ACmix(nn.Module):
    """ACmix (Pan et al., CVPR 2022), ResNet variant, stride 1.

    Shared 1x1 projections q, k, v (with bias) feed two paths:

    * attention: per pixel, ``num_heads``-head attention over a ``kernel_att`` x ``kernel_att`` window
      (reflection padded), logits ``q . (k_j + pe_center - pe_j)`` with a 1x1 conv position encoding of a
      [-1, 1] coordinate grid, softmax over the window;
    * convolution: a 1x1 conv maps the 3 x heads projection maps to ``kernel_conv**2`` maps per head channel,
      then a grouped ``kernel_conv`` conv initialised as shift kernels aggregates them.

    Output: ``alpha * attention + beta * convolution`` with learnable scalars (both 0.5 at init).
    Everything is within one sample, so outputs are batch independent.
    """

    def __init__(
        self, in_chs: int, out_chs: int, num_heads: int = 4, kernel_att: int = 7, kernel_conv: int = 3
    ) -> None:
        super().__init__()
        if out_chs % num_heads:
            raise ValueError(f"out_chs {out_chs} not divisible by num_heads {num_heads}")
        self.out_chs, self.num_heads, self.head_dim = out_chs, num_heads, out_chs // num_heads
        self.kernel_att, self.kernel_conv = kernel_att, kernel_conv
        self.scale = self.head_dim**-0.5
        self.q = nn.Conv2d(in_chs, out_chs, 1)
        self.k = nn.Conv2d(in_chs, out_chs, 1)
        self.v = nn.Conv2d(in_chs, out_chs, 1)
        self.pos = nn.Conv2d(2, self.head_dim, 1)
        self.softmax = nn.Softmax(dim=1)
        self.fc = nn.Conv2d(3 * num_heads, kernel_conv**2, 1, bias=False)
        self.dep_conv = nn.Conv2d(
            kernel_conv**2 * self.head_dim,
            out_chs,
            kernel_conv,
            padding=kernel_conv // 2,
            groups=self.head_dim,
            bias=False,
        )
        self.alpha = nn.Parameter(torch.tensor(0.5))
        self.beta = nn.Parameter(torch.tensor(0.5))
        self._init_shift()

    @torch.no_grad()
    def _init_shift(self) -> None:
        k = self.kernel_conv
        w = torch.zeros(k * k, k, k)
        for i in range(k * k):
            w[i, i // k, i % k] = 1.0
        self.dep_conv.weight.copy_(w.unsqueeze(0).repeat(self.out_chs, 1, 1, 1))

    def _unfold(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, k*k, H, W): every pixel's reflection-padded k x k neighbourhood."""
        b, c, h, w = x.shape
        p = self.kernel_att // 2
        cols = F.unfold(F.pad(x, (p, p, p, p), mode="reflect"), self.kernel_att)
        return cols.reshape(b, c, self.kernel_att**2, h, w)

    def _position(self, h: int, w: int, ref: torch.Tensor) -> torch.Tensor:
        ys = torch.arange(h, device=ref.device, dtype=ref.dtype) * (2.0 / max(h - 1, 1)) - 1.0
        xs = torch.arange(w, device=ref.device, dtype=ref.dtype) * (2.0 / max(w - 1, 1)) - 1.0
        grid = torch.stack((xs.unsqueeze(0).expand(h, w), ys.unsqueeze(1).expand(h, w)), dim=0)
        return self.pos(grid.unsqueeze(0))  # (1, head_dim, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        n, d = self.num_heads, self.head_dim
        q, k, v = self.q(x), self.k(x), self.v(x)

        # attention path: (B*N, d, H, W) per head
        pe = self._position(h, w, x)
        qh = q.reshape(b * n, d, h, w) * self.scale
        kh = k.reshape(b * n, d, h, w)
        vh = v.reshape(b * n, d, h, w)
        k_win = self._unfold(kh) + pe.unsqueeze(2) - self._unfold(pe)  # (B*N, d, k_att^2, H, W)
        att = self.softmax((qh.unsqueeze(2) * k_win).sum(1))  # (B*N, k_att^2, H, W)
        out_att = (att.unsqueeze(1) * self._unfold(vh)).sum(2).reshape(b, self.out_chs, h, w)

        # convolution path: (B, 3N, d, HW) -> (B, k^2, d, HW) -> (B, d*k^2, H, W) -> grouped shift conv
        f_all = torch.cat([t.reshape(b, n, d, h * w) for t in (q, k, v)], dim=1)
        f_conv = self.fc(f_all).permute(0, 2, 1, 3).reshape(b, d * self.kernel_conv**2, h, w)
        out_conv = self.dep_conv(f_conv)
        return self.alpha * out_att + self.beta * out_conv


class MultiScaleGlobalAssociation(nn.Module):
    """MGC as a residual block: [3x3 conv-BN-ReLU] -> multi-scale conv (eq. 2) -> ACmix -> BN, + x, ReLU."""

    def __init__(
        self,
        chs: int = 64,
        num_groups: int = 4,
        pre_conv: bool = True,
        num_heads: int = 4,
        kernel_att: int = 7,
        kernel_conv: int = 3,
        multi_scale: bool = True,
        acmix: bool = True,
    ) -> None:
        super().__init__()
        self.pre_conv = ConvNormAct(chs, chs, 3) if pre_conv else nn.Identity()
        # table 7: each part can be replaced by the 3x3 conv-BN-ReLU it stands in for
        self.multi_scale = MultiScaleConv(chs, num_groups) if multi_scale else ConvNormAct(chs, chs, 3)
        self.acmix = ACmix(chs, chs, num_heads, kernel_att, kernel_conv) if acmix else _conv_bn(chs, 3)
        self.bn = nn.BatchNorm2d(chs)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.acmix(self.multi_scale(self.pre_conv(x))))
        return self.act(y + x)


class GCLENet(FERModel):
    """GCLENet / LSDC-FER: ResNet34 + local feature enhancement (LFA) + multi-scale global association (MGC).

    Args:
        num_classes: classifier width.
        in_chans: input channels (3 in the paper).
        lfa: use the local feature enhancement module (table 5).
        mgc: use the multi-scale global association module (table 5).
        mgc_pre_conv: the MA-Net-style 3x3 conv at the start of the MGC (see the module docstring).
        num_heads: ACmix heads.
        kernel_att: ACmix attention window.
        lfa_split: cut the map into four quadrants with their own convs (table 6; False: the whole map).
        lfa_conv: ``'acb'`` (asymmetric conv blocks, the paper's LFA) or ``'3x3'`` (plain conv + BN; table 6).
        mgc_multiscale: the multi-scale conv of eq. 2 (False: a 3x3 conv-BN-ReLU instead; table 7 row 2).
        mgc_acmix: the fused convolution self-attention (False: a 3x3 conv-BN instead; table 7 row 3).
    """

    gradcam_layer = "layer4"

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 3,
        lfa: bool = True,
        mgc: bool = True,
        mgc_pre_conv: bool = True,
        num_heads: int = 4,
        kernel_att: int = 7,
        lfa_split: bool = True,
        lfa_conv: str = "acb",
        mgc_multiscale: bool = True,
        mgc_acmix: bool = True,
    ) -> None:
        super().__init__()
        rn = torchvision.models.resnet34(weights=None)
        self.conv1 = (
            rn.conv1 if in_chans == 3 else nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        )
        if in_chans != 3:
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1, self.relu, self.maxpool = rn.bn1, rn.relu, rn.maxpool
        self.lfa = LocalFeatureEnhancement(64, split=lfa_split, conv=lfa_conv) if lfa else None
        self.mgc = (
            MultiScaleGlobalAssociation(
                64,
                pre_conv=mgc_pre_conv,
                num_heads=num_heads,
                kernel_att=kernel_att,
                multi_scale=mgc_multiscale,
                acmix=mgc_acmix,
            )
            if mgc
            else None
        )
        self.layer1, self.layer2, self.layer3, self.layer4 = rn.layer1, rn.layer2, rn.layer3, rn.layer4
        self.num_classes, self.num_features = num_classes, 512
        self.head = nn.Linear(512, num_classes)
        for m in (self.lfa, self.mgc):
            if m is None:
                continue
            for mod in m.modules():
                if isinstance(mod, nn.Conv2d) and mod.kernel_size != (1, 1) and mod.groups == 1:
                    nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> the 64-channel stem map F (H/4 x W/4) that the LFA and MGC read."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_modules(self, f: torch.Tensor) -> torch.Tensor:
        """F -> ReLU(MGC(F) + LFA(F)); either part falls back to F / nothing when switched off."""
        if self.lfa is None and self.mgc is None:
            return f
        g = self.mgc(f) if self.mgc is not None else f
        if self.lfa is None:
            return g
        return self.relu(g + self.lfa(f))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_modules(self.forward_stem(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))
        return x if pre_logits else self.head(x)

    def fuse(self) -> GCLENet:
        """Fold every asymmetric conv block into a single 3x3 conv with bias (paper fig. 3b); returns self.

        Uses the BatchNorm running statistics, so call it on a trained model (eval outputs stay the same).
        The fused model has different state-dict keys: load checkpoints first, then fuse.
        """
        for m in [m for m in self.modules() if isinstance(m, AsymConvBlock)]:
            m.fuse()
        return self

    reparameterize = fuse


@register_model(
    paper="003: GCLENet/LSDC-FER (Electronics 2024)", input_size=(3, 224, 224), color="rgb", test_size=64
)
def gclenet(
    num_classes: int = 7, in_chans: int = 3, img_size: int = 224, lfa: bool = True, mgc: bool = True,
    lfa_split: bool = True, lfa_conv: str = "acb", mgc_multiscale: bool = True, mgc_acmix: bool = True,
    mgc_pre_conv: bool = True, num_heads: int = 4, kernel_att: int = 7,
):  # fmt: skip
    """GCLENet: ResNet34 + LFA (quadrant ACBs) + MGC (multi-scale conv + ACmix); 21.85 M (21.65 M fused).

    Switches: ``lfa``, ``mgc`` (table 5); ``lfa_split``, ``lfa_conv`` (table 6); ``mgc_multiscale``,
    ``mgc_acmix`` (table 7); ``mgc_pre_conv``, ``num_heads``, ``kernel_att`` (our reading of the MGC)."""
    if img_size < 16:
        raise ValueError(
            f"gclenet needs img_size >= 16 (the ACmix window is reflection padded), got {img_size}"
        )
    return GCLENet(
        num_classes=num_classes, in_chans=in_chans, lfa=lfa, mgc=mgc, mgc_pre_conv=mgc_pre_conv,
        num_heads=num_heads, kernel_att=kernel_att, lfa_split=lfa_split, lfa_conv=lfa_conv,
        mgc_multiscale=mgc_multiscale, mgc_acmix=mgc_acmix,
    )  # fmt: skip
