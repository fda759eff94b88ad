"""AEMT: Attention-Enhanced Multi-layer Transformer with Attentional Selective Fusion (Wang 2024).

Paper: J. Wang, "Evaluation and analysis of visual perception using attention-enhanced computation in
multimedia affective computing", *Frontiers in Neuroscience* 18:1449527 (2024),
doi:10.3389/fnins.2024.1449527 (no arXiv version, no official code). Its Attentional Selective Fusion
(ASF) comes from VTFF: F. Ma, B. Sun, S. Li, "Facial Expression Recognition with Visual Transformers and
Attentional Selective Fusion", IEEE Trans. Affective Computing (2021), arXiv:2103.16854 (no official
code either).

What is implemented (registry name ``aemt``, input 4x224x224 = RGB normalised with ImageNet mean/std
plus one LBP channel that the data layer computes from the same crop, see ``ferlab.transforms``):

1. **Dual-branch CNN** (paper section 3.1): two ResNet-18 trunks (timm ``resnet18``, ``pretrained=False``,
   stem + stages 1-4, no pooling/fc). ``rgb_branch`` reads the image channels, ``lbp_branch`` the LBP
   channel (its first conv has one input channel). Each gives a 512 x H/32 x W/32 map (7x7 at 224).
2. **Attentional Selective Fusion** (equations 1-3, the global-local attention of VTFF):
   each map gets its own learnable 1x1 projection, ``e_k = W_k F_k``; a shared global-local attention
   scores it, ``z_k = G(e_k) + L(e_k)``, with the *global* context ``G`` = GAP -> 1x1 C->C/r -> ReLU ->
   1x1 C/r->C (a C x 1 x 1 vector) and the *local* context ``L`` = 1x1 C->C/r -> BN -> ReLU -> 1x1 C/r->1
   (a 1 x H x W map), broadcast to C x H x W. The softmax over the two branches gives
   ``alpha_RGB = exp(z_RGB) / (exp(z_RGB) + exp(z_LBP))`` and ``alpha_LBP = 1 - alpha_RGB`` per element
   (eq. 1), ``F_fused = alpha_RGB * F_RGB + alpha_LBP * F_LBP`` (eq. 2) and ``F_norm = BN(F_fused)`` (eq. 3).
3. **Tokenisation** (eq. 4): a 1x1 projection C -> d (d = 512), flattening to H*W "visual words", a
   learnable class token and learnable positional encodings (resampled bicubically if the input size
   differs from the one the model was built for).
4. **Multi-layer Transformer encoder** (section 3.3, equations 5-8): 6 layers, 8 heads, d = 512, FFN 2048
   with ReLU (eq. 7), post-norm residuals ``LayerNorm(x + SubLayer(x))`` (eq. 8) — exactly the encoder of
   the "vanilla Transformer" the paper starts from (``torch.nn.TransformerEncoderLayer`` defaults),
   dropout 0.1 inside the encoder.
5. **Head**: the class token's output (512-d embedding) -> dropout 0.5 -> one fully connected layer.

Ablation switches (paper table 5; a switch off = the component "removed"):

=======  =====  =====  =====  ==============================================================
setting  lbp    asf    mte    model
=======  =====  =====  =====  ==============================================================
a        False  False  False  RGB ResNet-18 -> GAP -> dropout -> FC (the plain CNN baseline)
b        False  True   True   RGB ResNet-18 -> tokens -> encoder (nothing to fuse: ASF is idle)
c        True   False  True   both branches, channel concatenation (1024 ch) -> tokens -> encoder
d        True   True   False  both branches, ASF -> GAP -> dropout -> FC
e        True   True   True   the full AEMT
=======  =====  =====  =====  ==============================================================

* ``lbp=False``: the LBP branch is not built. The model still takes the registered 4-channel input
  (the data layer keeps appending the LBP channel) and **ignores channel 3**; a plain 3-channel (or
  1-channel gray) input built with ``in_chans=3`` (``1``) is accepted too. With one branch there is
  nothing to fuse, so ``asf`` has no effect (settings b and "lbp=False, asf=False, mte=True" are the
  same network), as the paper's table implies.
* ``asf=False``: the two maps are concatenated along channels (no attention, no weights; the token
  projection or the FC then learns one fixed, input-independent mix, which is what ASF makes adaptive).
* ``mte=False``: no tokens and no encoder; the fused map is global-average pooled into the embedding.

Size (7 classes, 224x224): setting a 11,180,103 parameters / 1.81 GMACs, b 30,383,175 / 2.77,
c 41,815,559 / 4.52, d 22,975,239 / 3.58, e (full) 42,178,311 / 4.53 GMACs
(``torch.utils.flop_counter``; 1 MAC = 2 FLOPs).

Input layout: ``in_chans`` is 1 or 3 image channels, optionally followed by one LBP channel (2 or 4);
``lbp=True`` needs the LBP channel. ``pretrained=path`` (``create_model``) loads a full AEMT state dict
non-strictly — the paper's transfer learning, pre-training on AffectNet (8 classes) and fine-tuning on
RAF-DB (7), is exactly that, the mismatched head being skipped. ImageNet ResNet-18 weights (torchvision
``resnet18`` IMAGENET1K_V1 or timm ``resnet18.a1_in1k``: same key names) go into both branches with
:meth:`AEMT.load_branch_weights`; the LBP branch's first conv gets the RGB kernels summed over colour.

Deviations from the paper (and places where it is silent):

* **Branch CNN**: the paper never names it. ResNet-18 (stages 1-4, stride 32) as in VTFF, taken from
  timm rather than re-typed. Stage 4 (7x7 = 49 tokens at 224) rather than stage 3 (196 tokens): the
  paper gives no token count, 49 tokens keep the 6-layer encoder cheap, and VTFF's third-party FLOP
  counter uses stage 4 as well.
* **Eq. 1 ``W_RGB * F_RGB``**: read as a learnable 1x1 projection per branch followed by the global-local
  attention the text says ASF uses (VTFF); the softmax runs over the two branches for every element
  of the C x H x W map. VTFF's third-party versions score the *sum* of the projected maps with one
  sigmoid; the paper's equation has one exponent per branch, which is what is implemented (a two-way
  softmax is a sigmoid of the score difference). Reduction r = 8 (VTFF's value).
* The global context has **no BatchNorm** (VTFF's versions put BN after the 1x1 convs on the pooled
  1x1 vector): BN on a 1x1 map fails for a training batch of one; a bias on the first conv instead.
  The last layer of both contexts has **no bias and no BN** (VTFF: BN): the scorer is shared by the
  two branches, so a constant added to both scores cancels in the softmax and would never learn.
* **Eq. 3 ``N``**: BatchNorm2d (the paper allows batch or layer norm; BN in eval mode keeps samples
  independent). The ``asf=False`` path has no extra normalisation (the ResNet stage already ends in BN).
* **Eq. 4 tokens**: linear 1x1 projection to d = 512, learnable class token + learnable positional
  encoding (the paper says "positional encoding" without details). The tokeniser is built whenever
  ``mte=True`` (the encoder needs tokens), also in setting c without ASF.
* **Encoder "streams" (L_in, parallel streams S_i, L_out, Figure 4)**: not specified enough to build
  (stream count, how the data are split and merged). Read as the standard encoder whose multi-head
  attention already runs parallel streams; L_in = tokenisation, L_out = class-token readout.
  d = 512, FFN 2048, dropout 0.1: the vanilla Transformer's base values (the paper gives only 6 layers
  and 8 heads). Layers are initialised independently (Xavier), not as copies of one layer.
* **Transfer learning of the Transformer** ("pre-trained ... on ImageNet"): no public ImageNet weights
  fit equations 7-8 (post-norm, ReLU; ViTs are pre-norm GELU), so the encoder starts from scratch
  unless a ferlab AEMT checkpoint (e.g. AffectNet pre-training) is passed with ``pretrained=path``.
* **Initialisation** without weights: timm's ResNet default (the last BN of every residual block starts
  at zero, so those blocks start as identities).
* **Input**: 224x224 as in the paper, but normalised with ImageNet mean/std (and 0.5/0.5 for LBP)
  instead of the paper's plain /255 scaling, because ferlab's data layer uses the model's data config
  and the branches are ImageNet-style ResNets. The paper's histogram equalisation belongs to the data
  layer, not to the model.
* **Head**: one FC layer after dropout 0.5 (the paper's "fully connected layer" + softmax; the softmax
  is left to the loss).
"""

from __future__ import annotations

import timm
import torch
from timm.layers import resample_abs_pos_embed, trunc_normal_
from timm.models import adapt_input_conv
from torch import nn

from ..errors import ConfigError
from ._base import FERModel
from ._registry import load_state_file, register_model


def _resnet18_trunk(in_chans: int) -> nn.Module:
    """ResNet-18 stem + stages 1-4 (no pooling, no fc), randomly initialised."""
    return timm.create_model("resnet18", pretrained=False, num_classes=0, global_pool="", in_chans=in_chans)


def _feat_side(img_size: int, stride_steps: int = 5) -> int:
    """Spatial side of a ResNet's stride-32 map: each of its 5 stride-2 steps rounds up."""
    side = img_size
    for _ in range(stride_steps):
        side = (side + 1) // 2
    return side


class AttentionalSelectiveFusion(nn.Module):
    """ASF, Wang 2024 (AEMT) equations 1-3: per-element softmax weights from global-local attention scores of
    learnable projections of both maps, weighted sum, normalisation.

    Args:
        dim: channels C of both input maps (and of the output).
        reduction: bottleneck ratio r of the global and local context MLPs.
    """

    def __init__(self, dim: int = 512, reduction: int = 8):
        super().__init__()
        hidden = max(dim // reduction, 1)
        self.proj_rgb = nn.Conv2d(dim, dim, 1)  # W_RGB
        self.proj_lbp = nn.Conv2d(dim, dim, 1)  # W_LBP
        self.global_att = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dim, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, dim, 1, bias=False),
        )
        self.local_att = nn.Sequential(
            nn.Conv2d(dim, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 1, bias=False),
        )
        self.norm = nn.BatchNorm2d(dim)  # N of eq. 3

    def score(self, e: torch.Tensor) -> torch.Tensor:
        """Global (C x 1 x 1) plus local (1 x H x W) attention logits, broadcast to C x H x W."""
        return self.global_att(e) + self.local_att(e)

    def weights(self, f_rgb: torch.Tensor, f_lbp: torch.Tensor) -> torch.Tensor:
        """alpha_RGB of eq. 1 ([B, C, H, W]); alpha_LBP = 1 - alpha_RGB."""
        z = torch.stack([self.score(self.proj_rgb(f_rgb)), self.score(self.proj_lbp(f_lbp))], 0)
        return z.softmax(0)[0]

    def forward(self, f_rgb: torch.Tensor, f_lbp: torch.Tensor) -> torch.Tensor:
        alpha = self.weights(f_rgb, f_lbp)
        fused = alpha * f_rgb + (1.0 - alpha) * f_lbp  # eq. 2
        return self.norm(fused)  # eq. 3


class ConcatFusion(nn.Module):
    """Parameter-free fusion used when ``asf=False``: channel concatenation [F_RGB, F_LBP]."""

    def forward(self, f_rgb: torch.Tensor, f_lbp: torch.Tensor) -> torch.Tensor:
        return torch.cat([f_rgb, f_lbp], 1)


class RGBOnly(nn.Module):
    """Fusion stand-in when ``lbp=False``: passes the RGB map through (a hook point for Grad-CAM)."""

    def forward(self, f_rgb: torch.Tensor) -> torch.Tensor:
        return f_rgb


class VisualTokenizer(nn.Module):
    """Eq. 4: 1x1 projection to ``embed_dim``, flatten to tokens, prepend a class token, add learnable
    positional encodings (resampled if the grid differs from ``grid``).

    Args:
        in_dim: channels of the fused map.
        embed_dim: token width d.
        grid: (H, W) of the map at the model's native input size.
        drop: dropout after adding the positional encoding.
    """

    def __init__(self, in_dim: int, embed_dim: int, grid: tuple[int, int], drop: float = 0.1):
        super().__init__()
        self.grid = grid
        self.proj = nn.Conv2d(in_dim, embed_dim, 1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid[0] * grid[1], embed_dim))
        self.drop = nn.Dropout(drop)
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # [B, d, H, W]
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # [B, H*W, d]
        pos = self.pos_embed
        if (h, w) != self.grid:
            pos = resample_abs_pos_embed(pos, (h, w), self.grid, num_prefix_tokens=1)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1)
        return self.drop(x + pos)


class AEMT(FERModel):
    """Dual-branch ResNet-18 (RGB, LBP) -> ASF -> tokens -> 6-layer Transformer encoder -> FC.

    Args:
        num_classes: classifier width.
        in_chans: 1 or 3 image channels, optionally followed by one LBP channel (2 or 4).
        img_size: native square input side (sizes the positional encoding).
        lbp: build the LBP branch (needs the LBP channel); False = RGB branch only, LBP channel ignored.
        asf: fuse with Attentional Selective Fusion; False = channel concatenation.
        mte: tokens + Transformer encoder; False = global average pooling of the fused map.
        embed_dim: token width d.
        depth: encoder layers.
        num_heads: attention heads.
        mlp_dim: encoder feed-forward width.
        encoder_drop_rate: dropout inside the encoder and after the positional encoding.
        drop_rate: dropout before the FC head.
        asf_reduction: bottleneck ratio of the ASF context MLPs.
    """

    gradcam_layer = "fusion"

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 4,
        img_size: int = 224,
        lbp: bool = True,
        asf: bool = True,
        mte: bool = True,
        embed_dim: int = 512,
        depth: int = 6,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        encoder_drop_rate: float = 0.1,
        drop_rate: float = 0.5,
        asf_reduction: int = 8,
    ):
        super().__init__()
        if in_chans not in (1, 2, 3, 4):
            raise ConfigError(f"aemt: in_chans={in_chans}; expected 1 or 3 image channels (+1 LBP channel)")
        has_lbp_channel = in_chans in (2, 4)
        if lbp and not has_lbp_channel:
            raise ConfigError(
                f"aemt: lbp=True needs an LBP channel after the image channels; in_chans={in_chans}"
            )
        self.img_chans = in_chans - int(has_lbp_channel)
        self.use_lbp, self.use_asf, self.use_mte = lbp, asf, mte
        self.num_classes = num_classes

        self.rgb_branch = _resnet18_trunk(self.img_chans)
        c = self.rgb_branch.num_features  # 512
        if lbp:
            self.lbp_branch = _resnet18_trunk(1)
            self.fusion = AttentionalSelectiveFusion(c, asf_reduction) if asf else ConcatFusion()
            fused_dim = c if asf else 2 * c
        else:
            self.lbp_branch = None
            self.fusion = RGBOnly()
            fused_dim = c

        if mte:
            side = _feat_side(img_size)
            self.tokens = VisualTokenizer(fused_dim, embed_dim, (side, side), encoder_drop_rate)
            layer = nn.TransformerEncoderLayer(
                embed_dim,
                num_heads,
                mlp_dim,
                encoder_drop_rate,
                activation="relu",
                batch_first=True,
                norm_first=False,
            )
            self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
            for p in self.encoder.parameters():  # independent init per layer (not copies of one layer)
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            self.num_features = embed_dim
        else:
            self.tokens = None
            self.encoder = None
            self.num_features = fused_dim
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes)

    def branch_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """F_RGB and F_LBP ([B, 512, H/32, W/32]; F_LBP is None when ``lbp=False``)."""
        f_rgb = self.rgb_branch.forward_features(x[:, : self.img_chans])
        f_lbp = (
            self.lbp_branch.forward_features(x[:, self.img_chans :]) if self.lbp_branch is not None else None
        )
        return f_rgb, f_lbp

    def fuse(self, f_rgb: torch.Tensor, f_lbp: torch.Tensor | None) -> torch.Tensor:
        """The fused (for ASF: normalised) map the encoder or the pooling reads."""
        return self.fusion(f_rgb) if f_lbp is None else self.fusion(f_rgb, f_lbp)

    def encode(self, fused: torch.Tensor) -> torch.Tensor:
        """Tokens (eq. 4) through the encoder (eqs. 5-8): [B, 1 + H*W, d]; class token first."""
        return self.encoder(self.tokens(fused))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder tokens [B, 1 + H*W, d] when ``mte=True``, else the fused map [B, C, H, W]."""
        fused = self.fuse(*self.branch_maps(x))
        return self.encode(fused) if self.use_mte else fused

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x[:, 0] if self.use_mte else x.mean((2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward_outputs(self, x: torch.Tensor) -> dict:
        """Logits, embedding and ``maps``: 'rgb', 'lbp' (branch maps), 'alpha_rgb' (ASF weights), 'fused'."""
        f_rgb, f_lbp = self.branch_maps(x)
        fused = self.fuse(f_rgb, f_lbp)
        maps = {"rgb": f_rgb, "fused": fused}
        if f_lbp is not None:
            maps["lbp"] = f_lbp
            if isinstance(self.fusion, AttentionalSelectiveFusion):
                maps["alpha_rgb"] = self.fusion.weights(f_rgb, f_lbp)
        emb = self.forward_head(self.encode(fused) if self.use_mte else fused, pre_logits=True)
        return {"logits": self.classify(emb), "embedding": emb, "maps": maps}

    @torch.no_grad()
    def load_branch_weights(self, path: str) -> dict[str, int]:
        """Load an ImageNet ResNet-18 state dict (torchvision or timm key names) into both branches.

        The LBP branch's (and a gray RGB branch's) first conv gets the kernels summed over colour
        (timm's ``adapt_input_conv``); the file's ``fc`` is ignored. Returns tensors loaded per branch.
        """
        sd = {k: v for k, v in load_state_file(path).items() if not k.startswith("fc.")}
        counts = {}
        branches = {"rgb_branch": self.rgb_branch, "lbp_branch": self.lbp_branch}
        for name, branch in branches.items():
            if branch is None:
                continue
            own = branch.state_dict()
            w = dict(sd)
            if "conv1.weight" in w and w["conv1.weight"].shape[1] != own["conv1.weight"].shape[1]:
                w["conv1.weight"] = adapt_input_conv(own["conv1.weight"].shape[1], w["conv1.weight"])
            w = {k: v for k, v in w.items() if k in own and own[k].shape == v.shape}
            branch.load_state_dict(w, strict=False)
            counts[name] = len(w)
        return counts


@register_model(paper="000: AEMT (Front. Neurosci. 2024)", input_size=(4, 224, 224), lbp=True, test_size=64)
def aemt(
    num_classes: int = 7,
    in_chans: int = 4,
    img_size: int = 224,
    lbp: bool = True,
    asf: bool = True,
    mte: bool = True,
    depth: int = 6,
    num_heads: int = 8,
    drop_rate: float = 0.5,
    encoder_drop_rate: float = 0.1,
    branch_weights: str | None = None,
    **kwargs,
) -> AEMT:
    """Dual ResNet-18 (RGB + LBP) -> ASF -> 6-layer 8-head Transformer encoder -> FC (Wang 2024).

    Switches: ``lbp``, ``asf``, ``mte`` (table 5); ``depth``, ``num_heads`` (the encoder; the paper's 6 and
    8), ``drop_rate`` (before the FC; the paper tunes 0.3-0.5) and ``encoder_drop_rate``. ``branch_weights``:
    a local ImageNet ResNet-18 state dict (torchvision's ``resnet18-f37072fd.pth`` or timm's ``resnet18``
    safetensors) loaded into both branches (:meth:`AEMT.load_branch_weights`); ferlab downloads nothing."""
    model = AEMT(num_classes, in_chans, img_size, lbp=lbp, asf=asf, mte=mte, depth=depth, num_heads=num_heads,
                 drop_rate=drop_rate, encoder_drop_rate=encoder_drop_rate)  # fmt: skip
    if branch_weights:  # a local ImageNet ResNet-18 file for both branches (the paper's transfer learning)
        model.load_branch_weights(branch_weights)
    return model
