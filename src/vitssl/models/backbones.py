"""Backbones: a thin wrapper over timm models with one interface for ViT (and later Swin).

The timm model is kept whole under ``self.model`` so its parameters keep timm's own names: exporting the
backbone to timm is a matter of stripping the ``model.`` prefix.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import timm
import torch
from torch import Tensor, nn

from vitssl.errors import VitsslError

# Short names for the common sizes (Dosovitskiy et al. 2021; DeiT sizes for tiny/small, Touvron et al. 2021).
PRESETS: dict[str, str] = {
    "vit_tiny": "vit_tiny_patch16_224",
    "vit_small": "vit_small_patch16_224",
    "vit_base": "vit_base_patch16_224",
    "vit_large": "vit_large_patch16_224",
}


@dataclass
class Features:
    """What a backbone returns for a batch of images.

    Attributes:
        pooled: (B, D) view representation: [CLS] after the final norm for ViT.
        tokens: (B, N, D) patch (region) tokens after the final norm, row-major over ``grid``.
        grid: (rows, cols) of the token grid.
    """

    pooled: Tensor
    tokens: Tensor
    grid: tuple[int, int]


class Backbone(nn.Module):
    """A timm vision transformer seen through one small interface.

    Args:
        model: a timm ``VisionTransformer`` created with ``num_classes=0`` and ``dynamic_img_size=True`` so crops
            of any size (multiple of the patch size) get interpolated position embeddings.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.embed_dim: int = int(model.embed_dim)
        patch = model.patch_embed.patch_size
        self.patch_size: int = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        self.num_prefix_tokens: int = int(getattr(model, "num_prefix_tokens", 1))

    def forward(self, images: Tensor) -> Features:
        tokens = self.model.forward_features(images)  # (B, prefix + N, D), after the final norm
        rows, cols = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
        return Features(pooled=tokens[:, 0], tokens=tokens[:, self.num_prefix_tokens :], grid=(rows, cols))

    def pooled(self, images: Tensor) -> Tensor:
        """(B, D) view representation (used by k-NN)."""
        return self.forward(images).pooled

    @torch.no_grad()
    def last_attention(self, images: Tensor) -> Tensor:
        """Self-attention of the last block, (B, heads, T, T), recomputed explicitly.

        Training keeps timm's fused attention; for pictures we redo the last block's attention by hand from its
        own ``qkv`` projection so the weights are exactly those the fused kernel would use.
        """
        attn = self.model.blocks[-1].attn
        captured: list[Tensor] = []
        # A forward hook on the last attention module sees its input (the normalised tokens) through public APIs.
        handle = attn.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
        try:
            self.model.forward_features(images)
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
    close = difflib.get_close_matches(name, list(PRESETS) + timm.list_models("vit_*"), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"presets: {', '.join(PRESETS)}"
    raise VitsslError(f"unknown backbone '{name}'; {hint} (any timm ViT name also works)")


def build_backbone(
    name: str,
    patch_size: int | None = None,
    img_size: int | None = None,
    depth: int | None = None,
    drop_path_rate: float = 0.0,
    **overrides: Any,
) -> Backbone:
    """Create a randomly initialised backbone.

    Args:
        name: a preset (``vit_tiny``, ``vit_small``, ``vit_base``, ``vit_large``) or any timm ViT name.
        patch_size: patch size override (e.g. 4 for 32 px CIFAR images).
        img_size: native image size of the position embeddings; other sizes are interpolated.
        depth: number of blocks override.
        drop_path_rate: stochastic depth rate.
        **overrides: any other keyword of the timm model constructor.

    Example:
        >>> backbone = build_backbone("vit_tiny", patch_size=4, img_size=32)
        >>> backbone(torch.zeros(2, 3, 32, 32)).tokens.shape
        torch.Size([2, 64, 192])
    """
    kwargs: dict[str, Any] = {"num_classes": 0, "dynamic_img_size": True, "drop_path_rate": drop_path_rate}
    kwargs.update(
        {k: v for k, v in (("patch_size", patch_size), ("img_size", img_size), ("depth", depth)) if v is not None}
    )
    kwargs.update(overrides)
    timm_name = _resolve_name(name)
    try:
        model = timm.create_model(timm_name, pretrained=False, **kwargs)
    except TypeError as exc:
        raise VitsslError(f"backbone '{name}' does not accept these options ({exc}); remove the override") from None
    if not hasattr(model, "blocks") or not hasattr(model, "patch_embed"):
        raise VitsslError(f"backbone '{name}' is not a vision transformer; use a ViT preset or timm ViT name")
    return Backbone(model)
