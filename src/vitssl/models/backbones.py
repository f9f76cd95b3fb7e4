"""Backbones: a thin wrapper over timm models with one interface for ViT and Swin.

The timm model is kept whole under ``self.model`` so its parameters keep timm's own names: exporting the
backbone to timm is a matter of stripping the ``model.`` prefix.

Token masks (masked-image modelling, e.g. iBOT, Zhou et al. 2022, arXiv 2111.07832, section 3.2; SimMIM for Swin,
Xie et al. 2022, arXiv 2111.09886): a backbone built with ``mask_token=True`` replaces the patch embeddings that
a boolean mask selects by one learned embedding. The replacement has to happen after the patch embedding and
before anything else sees the tokens (for a ViT: before the position embeddings are added, so a masked token
still knows where it is). timm adds them in ``VisionTransformer._pos_embed``, which is private; the patch
embedding module is public and is the last step before it, so a forward hook on ``patch_embed``, registered for
the one masked call, swaps the tokens. The same hook serves Swin, whose first stage reads the patch embedding's
output directly.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Literal, cast

import timm
import torch
from torch import Tensor, nn

from vitssl.errors import VitsslError
from vitssl.models.pos_embed import dino_pos_embed

# How a ViT's position embeddings are resampled to another patch grid: timm's (resample_abs_pos_embed, what vitssl
# trains with) or DINO's own (vitssl.models.pos_embed, what the authors' released weights were evaluated with).
PosInterpolation = Literal["timm", "dino"]
POS_INTERPOLATIONS = ("timm", "dino")

# Short names for the common sizes (Dosovitskiy et al. 2021; DeiT sizes for tiny/small, Touvron et al. 2021;
# Swin: Liu et al. 2021, arXiv 2103.14030, as used by EsViT, Li et al. 2021, arXiv 2106.09785).
PRESETS: dict[str, str] = {
    "vit_tiny": "vit_tiny_patch16_224",
    "vit_small": "vit_small_patch16_224",
    "vit_base": "vit_base_patch16_224",
    "vit_large": "vit_large_patch16_224",
    "swin_tiny": "swin_tiny_patch4_window7_224",
    "swin_small": "swin_small_patch4_window7_224",
    "swin_base": "swin_base_patch4_window7_224",
    # Half of ViT-Tiny's width (96-d, 3 heads of 32) for short CPU budgets on small images: about a quarter of the
    # matrix work per token, so more epochs per minute (docs/learning.md).
    "vit_mini": "vit_tiny_patch16_224",
    # Small-image Swins for 32 px data: patch 2 and window 4 give a 16x16 -> 8x8 -> 4x4 token pyramid.
    "swin_mini_32": "swin_tiny_patch4_window7_224",
    "swin_tiny_32": "swin_tiny_patch4_window7_224",
}

# Constructor arguments that turn the timm architecture into the preset (EsViT's Swin uses LayerNorm eps 1e-6,
# the same as timm's default for Swin is 1e-5; the difference is immaterial and we keep timm's layers as they are).
PRESET_KWARGS: dict[str, dict[str, Any]] = {
    "vit_mini": {"embed_dim": 96, "num_heads": 3},
    "swin_mini_32": {"patch_size": 2, "window_size": 4, "embed_dim": 48, "depths": (2, 2, 2), "num_heads": (2, 4, 8)},
    "swin_tiny_32": {"patch_size": 2, "window_size": 4, "embed_dim": 96, "depths": (2, 2, 6), "num_heads": (3, 6, 12)},
}


@dataclass
class Features:
    """What a backbone returns for a batch of images.

    Attributes:
        pooled: (B, D) view representation: [CLS] after the final norm for ViT, the mean of the final tokens for
            Swin (which has no [CLS]).
        tokens: (B, N, D) patch (region) tokens after the final norm, row-major over ``grid``: the last stage's
            tokens for Swin.
        grid: (rows, cols) of the token grid.
    """

    pooled: Tensor
    tokens: Tensor
    grid: tuple[int, int]


class Backbone(nn.Module):
    """A timm vision transformer (ViT or Swin) seen through one small interface.

    Args:
        model: a timm ``VisionTransformer`` created with ``num_classes=0`` and ``dynamic_img_size=True``, or a
            timm ``SwinTransformer`` created with ``num_classes=0`` and ``strict_img_size=False``, so crops of any
            size (multiple of the patch size) work: interpolated position embeddings for ViT, attention masks
            built per input size (and windows padded to the feature map) for Swin.
        mask_token: Whether :meth:`forward` accepts token masks: adds the learned ``mask_token`` parameter
            (zeros at first, as in iBOT). Only such backbones have it, so backbones without masks keep the state
            dict keys of runs and exports made before masks existed, and load them strictly.
        pos_interpolation: ViT only: ``"timm"`` (timm's own resampling, the training default) or ``"dino"``
            (DINO's ``interpolate_pos_encoding``, for the authors' released weights; see
            :mod:`vitssl.models.pos_embed`). Both leave the native grid's embedding unchanged.
    """

    def __init__(
        self, model: nn.Module, mask_token: bool = False, pos_interpolation: PosInterpolation = "timm"
    ) -> None:
        super().__init__()
        # A timm VisionTransformer or SwinTransformer: the attributes read here and below differ by family, so the
        # model is read dynamically.
        self.model: Any = cast(Any, model)
        self.is_swin: bool = hasattr(model, "layers") and not hasattr(model, "blocks")
        patch = self.model.patch_embed.patch_size
        self.patch_size: int = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        if self.is_swin:
            self.embed_dim: int = int(self.model.num_features)
            self.num_prefix_tokens: int = 0
            # patch merging halves the grid between stages: one final token covers stride x stride pixels
            self.stride: int = self.patch_size * 2 ** (len(self.model.layers) - 1)
        else:
            self.embed_dim = int(self.model.embed_dim)
            self.num_prefix_tokens = int(getattr(self.model, "num_prefix_tokens", 1))
            self.stride = self.patch_size
        if pos_interpolation not in POS_INTERPOLATIONS:
            raise VitsslError(f"unknown pos_interpolation {pos_interpolation!r}; use 'timm' or 'dino'")
        if pos_interpolation != "timm" and (self.is_swin or getattr(self.model, "no_embed_class", False)):
            raise VitsslError("pos_interpolation='dino' needs a ViT whose position embeddings cover its [CLS] token")
        self.pos_interpolation: PosInterpolation = pos_interpolation
        width = int(self.model.patch_embed.proj.out_channels)  # the patch embedding's width (Swin: stage 1's)
        self.mask_token: nn.Parameter | None = nn.Parameter(torch.zeros(width)) if mask_token else None

    def forward_features(self, images: Tensor) -> Tensor:
        """The timm model's ``forward_features`` output; with ``pos_interpolation="dino"`` the same network run
        from timm's public submodules, with DINO's position-embedding interpolation in place of timm's."""
        if self.pos_interpolation == "timm":
            return self.model.forward_features(images)
        m = self.model
        x = m.patch_embed(images)
        if x.ndim == 4:  # timm's dynamic-size patch embedding keeps the (B, rows, cols, D) grid
            x = x.flatten(1, 2)
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        prefix = [t.expand(x.shape[0], -1, -1) for t in (m.cls_token, m.reg_token) if t is not None]
        x = torch.cat([*prefix, x], dim=1) + dino_pos_embed(m.pos_embed, grid, self.num_prefix_tokens)
        x = m.norm_pre(m.patch_drop(m.pos_drop(x)))
        return m.norm(m.blocks(x))

    def forward(self, images: Tensor, masks: Tensor | None = None) -> Features:
        """Features of ``images`` (B, 3, H, W).

        Args:
            images: The batch.
            masks: Optional boolean token masks, (B, rows, cols) over the patch grid or (B, rows * cols)
                row-major: True replaces that patch's embedding by :attr:`mask_token` before the transformer
                sees it (for a ViT, before the position embedding is added). None: no masking.
        """
        out = self.forward_features(images) if masks is None else self._masked_features(images, masks)
        if self.is_swin:  # (B, H, W, D), after the final norm
            b, h, w, d = out.shape
            tokens = out.reshape(b, h * w, d)
            return Features(pooled=tokens.mean(dim=1), tokens=tokens, grid=(h, w))
        # ViT: (B, prefix + N, D), after the final norm
        rows, cols = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
        return Features(pooled=out[:, 0], tokens=out[:, self.num_prefix_tokens :], grid=(rows, cols))

    def _masked_features(self, images: Tensor, masks: Tensor) -> Any:
        """timm's ``forward_features`` with the masked patch embeddings swapped for the mask token."""
        token = self.mask_token
        if token is None:
            raise VitsslError(
                "token masks need a backbone built with mask_token=True (build_backbone(..., mask_token=True))"
            )
        if masks.dtype != torch.bool or masks.ndim not in (2, 3) or masks.shape[0] != images.shape[0]:
            raise VitsslError(
                f"token masks must be boolean, (B, rows, cols) or (B, N) with B={images.shape[0]}; "
                f"got {masks.dtype} {tuple(masks.shape)}"
            )

        def swap(_module: nn.Module, _args: Any, embedded: Tensor) -> Tensor:
            grid = tuple(embedded.shape[1:-1])  # (rows, cols): ViT with dynamic sizes and Swin are channels-last
            fits = tuple(masks.shape[1:]) == grid if masks.ndim == 3 else masks.shape[1] == math.prod(grid)
            if not fits:
                raise VitsslError(f"token masks of shape {tuple(masks.shape)} do not fit the {grid} patch grid")
            where = masks.reshape(embedded.shape[:-1]).unsqueeze(-1)
            return torch.where(where, token.to(embedded.dtype), embedded)

        handle = self.model.patch_embed.register_forward_hook(swap)
        try:
            return self.forward_features(images)
        finally:
            handle.remove()

    def pooled(self, images: Tensor) -> Tensor:
        """(B, D) view representation (used by k-NN)."""
        return self.forward(images).pooled

    def blocks(self) -> list[nn.Module]:
        """The transformer blocks in order (for Swin: all stages' blocks, stage after stage)."""
        if self.is_swin:
            return [block for stage in self.model.layers for block in stage.blocks]
        return list(self.model.blocks)

    def intermediate(self, images: Tensor, n: int = 4, patch_mean: bool = False) -> list[Tensor]:
        """Pooled features of the last ``n`` blocks, each (B, D_i), for the linear-probe protocol.

        ViT (DINO, Caron et al. 2021, section 4.1 / docs/methods.md 1.5): the [CLS] token of each block through the
        final norm; with ``patch_mean`` the mean of the last block's normalised patch tokens is appended.
        Swin (EsViT, Li et al. 2021 / docs/methods.md 2.3): the token mean of each block; blocks of the last stage go
        through the final norm, blocks of earlier stages (whose width differs) through a parameter-free
        LayerNorm. For Swin-T and n=4 this is 384 + 384 + 768 + 768 = 2304 dimensions.
        """
        blocks = self.blocks()
        if not 1 <= n <= len(blocks):
            raise VitsslError(f"cannot take the last {n} blocks of a backbone with {len(blocks)}; use 1..{len(blocks)}")
        captured: list[Tensor] = []
        handles = [b.register_forward_hook(lambda _m, _a, out: captured.append(out)) for b in blocks[-n:]]
        try:
            self.forward_features(images)
        finally:
            for h in handles:
                h.remove()
        norm = self.model.norm
        feats: list[Tensor] = []
        for out in captured:
            if self.is_swin:
                tokens = out.flatten(1, 2)  # (B, H*W, D_i)
                if tokens.shape[-1] == self.embed_dim:
                    tokens = norm(tokens)
                else:
                    tokens = nn.functional.layer_norm(tokens, tokens.shape[-1:])
                feats.append(tokens.mean(dim=1))
            else:
                feats.append(norm(out)[:, 0])
        if patch_mean:
            last = self.forward(images)
            feats.append(last.tokens.mean(dim=1))
        return feats

    @torch.no_grad()
    def last_attention(self, images: Tensor) -> Tensor:
        """Self-attention of the last ViT block, (B, heads, T, T), recomputed explicitly.

        Training keeps timm's fused attention; for pictures we redo the last block's attention by hand from its
        own ``qkv`` projection so the weights are exactly those the fused kernel would use. Swin backbones have
        windowed attention and no [CLS]: see ``vitssl.eval.attention`` for their patch-query maps.
        """
        if self.is_swin:
            raise VitsslError(
                "last_attention is defined for ViT backbones; for Swin use a patch query (vitssl attention)"
            )
        attn = self.model.blocks[-1].attn
        captured: list[Tensor] = []
        # A forward hook on the last attention module sees its input (the normalised tokens) through public APIs.
        handle = attn.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
        try:
            self.forward_features(images)
        finally:
            handle.remove()
        y = captured[0]
        b, t, d = y.shape
        qkv = attn.qkv(y).reshape(b, t, 3, attn.num_heads, d // attn.num_heads).permute(2, 0, 3, 1, 4)
        q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
        return ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


def _resolve_name(name: str) -> str:
    if name in PRESETS:
        return PRESETS[name]
    if timm.is_model(name):
        return name
    candidates = list(PRESETS) + timm.list_models("vit_*") + timm.list_models("swin_*")
    close = difflib.get_close_matches(name, candidates, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"presets: {', '.join(PRESETS)}"
    raise VitsslError(f"unknown backbone '{name}'; {hint} (any timm ViT or Swin name also works)")


def build_backbone(
    name: str,
    patch_size: int | None = None,
    img_size: int | None = None,
    depth: int | None = None,
    drop_path_rate: float = 0.0,
    window_size: int | None = None,
    mask_token: bool = False,
    pos_interpolation: PosInterpolation = "timm",
    **overrides: Any,
) -> Backbone:
    """Create a randomly initialised backbone.

    Args:
        name: a preset (``vit_tiny``, ``vit_small``, ``vit_base``, ``vit_large``, ``swin_tiny``, ``swin_small``,
            ``swin_base``, and for 32 px images ``swin_mini_32``, ``swin_tiny_32``) or any timm ViT or Swin name.
        patch_size: patch size override (e.g. 4 for 32 px CIFAR images with a ViT).
        img_size: native image size (ViT: of the position embeddings, other sizes are interpolated; Swin: the
            size the windows are laid out for, other sizes get masks built on the fly).
        depth: number of blocks override (ViT only; Swin's depths are per stage: pass ``depths=(...)``).
        drop_path_rate: stochastic depth rate.
        window_size: Swin attention window override (7 or 14 at 224 px; 4 for the 32 px presets).
        mask_token: Give the backbone a learned mask token so that its forward accepts token masks
            (:class:`Backbone`); off by default, which keeps the state dict keys of mask-free runs.
        pos_interpolation: ViT position-embedding resampling at other sizes: ``"timm"`` or ``"dino"`` (the
            authors' formula, for their released weights; :class:`Backbone`).
        **overrides: any other keyword of the timm model constructor.

    Example:
        >>> backbone = build_backbone("vit_tiny", patch_size=4, img_size=32)
        >>> backbone(torch.zeros(2, 3, 32, 32)).tokens.shape
        torch.Size([2, 64, 192])
        >>> build_backbone("swin_mini_32", img_size=32)(torch.zeros(2, 3, 32, 32)).grid
        (4, 4)
    """
    timm_name = _resolve_name(name)
    swin = timm_name.startswith("swin")
    kwargs: dict[str, Any] = {"num_classes": 0, "drop_path_rate": drop_path_rate}
    kwargs.update(PRESET_KWARGS.get(name, {}))
    if swin:
        if depth is not None:
            raise VitsslError(
                "model.depth applies to ViT backbones; remove it (a Swin has one depth per stage: pick a preset "
                "such as swin_mini_32, swin_tiny_32, swin_tiny or another timm Swin name)"
            )
        kwargs["strict_img_size"] = False
    else:
        kwargs["dynamic_img_size"] = True
        if window_size is not None:
            raise VitsslError("model.window_size applies to Swin backbones; remove it for a ViT")
    named = (("patch_size", patch_size), ("img_size", img_size), ("depth", depth), ("window_size", window_size))
    kwargs.update({k: v for k, v in named if v is not None})
    kwargs.update(overrides)
    try:
        model = timm.create_model(timm_name, pretrained=False, **kwargs)
    except TypeError as exc:
        raise VitsslError(f"backbone '{name}' does not accept these options ({exc}); remove the override") from None
    if not hasattr(model, "patch_embed") or not (hasattr(model, "blocks") or hasattr(model, "layers")):
        raise VitsslError(f"backbone '{name}' is not a vision transformer; use a ViT or Swin preset or timm name")
    return Backbone(model, mask_token=mask_token, pos_interpolation=pos_interpolation)
