"""An independent plain-PyTorch ViT written from DINO's published description (Caron et al. 2021, arXiv
2104.14294, and the ViT paper, Dosovitskiy et al. 2021), with the state-dict names of the authors' release files.

It exists to check vitssl's loaders against something that shares no code with timm: a 16x16 (or 8x8) patch
convolution, a [CLS] token prepended, position embeddings added (bicubically interpolated with DINO's
``(h0 + 0.1) / sqrtN`` scale factor when the patch grid is not the native one), pre-norm blocks (LayerNorm eps
1e-6, multi-head attention from one ``qkv`` projection, GELU MLP), a final LayerNorm, and the [CLS] row returned.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-6


class RefAttention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).unbind(dim=2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (b, heads, t, head_dim)
        weights = (q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, t, d))


class RefMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=EPS), nn.LayerNorm(dim, eps=EPS)
        self.attn = RefAttention(dim, heads, qkv_bias)
        self.mlp = RefMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefPatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)


class RefViT(nn.Module):
    """DINO's ViT as published: ``model(images)`` is the final-norm [CLS], (B, D)."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.patch = patch_size
        self.patch_embed = RefPatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + (img_size // patch_size) ** 2, embed_dim))
        self.blocks = nn.ModuleList(RefBlock(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=EPS)

    def positions(self, h0: int, w0: int) -> Tensor:
        n = self.pos_embed.shape[1] - 1
        if h0 * w0 == n and h0 == w0:
            return self.pos_embed
        side, dim = math.sqrt(n), self.pos_embed.shape[-1]
        grid = self.pos_embed[:, 1:].reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=((h0 + 0.1) / side, (w0 + 0.1) / side), mode="bicubic")
        assert grid.shape[-2:] == (h0, w0)
        return torch.cat([self.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, h0 * w0, dim)], dim=1)

    def forward(self, images: Tensor) -> Tensor:
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        x = x + self.positions(images.shape[-2] // self.patch, images.shape[-1] // self.patch)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


def random_state(model: nn.Module, seed: int = 0, scale: float = 0.2) -> dict[str, Tensor]:
    """Every tensor of ``model`` drawn at random with std ``scale`` (norm weights around 1), so that no mapping
    slip can hide; 0.05 is about the spread of trained ViT-S matrices, which keeps 12-block activations sane."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, tensor in model.state_dict().items():
        value = torch.randn(tensor.shape, generator=g) * scale
        out[name] = value + 1.0 if name.endswith("weight") and tensor.ndim == 1 else value
    return out
