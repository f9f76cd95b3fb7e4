"""A functional ViT forward written from the papers' description, reading the authors' state-dict names: the
independent check of the ``--format dino`` / ``--format sit`` exports (it shares no code with timm).

DINO (Caron et al. 2021, arXiv 2104.14294) and SiT (Atito et al. 2021, arXiv 2104.03602) use the ViT of
Dosovitskiy et al. 2021 with pre-norm blocks: a patch convolution, prefix tokens ([CLS]; SiT: rotation and
contrastive) before the patches, learned position embeddings added to all tokens, then per block
``x + proj(attention(norm1(x)))`` and ``x + fc2(gelu(fc1(norm2(x))))``, a final LayerNorm (eps 1e-6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-6  # the authors' vit_tiny/small/base pass LayerNorm(eps=1e-6)


def _norm(x: Tensor, state: dict[str, Tensor], name: str) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], state[f"{name}.weight"], state[f"{name}.bias"], EPS)


def reference_tokens(state: dict[str, Tensor], images: Tensor, prefix: tuple[str, ...], num_heads: int) -> Tensor:
    """(B, len(prefix) + N, D) final-norm tokens of the ViT in ``state`` at its native size.

    Args:
        state: The authors' names (``patch_embed.proj.*``, ``pos_embed``, ``blocks.{i}.*``, ``norm.*``).
        images: (B, 3, H, W) at the size of ``pos_embed``.
        prefix: The prefix-token tensors' names, in order (``("cls_token",)``; SiT's ``("rot_token",
            "contrastive_token")``).
        num_heads: Attention heads.
    """
    x = F.conv2d(
        images,
        state["patch_embed.proj.weight"],
        state.get("patch_embed.proj.bias"),
        stride=state["patch_embed.proj.weight"].shape[-1],
    )
    x = x.flatten(2).transpose(1, 2)
    b = x.shape[0]
    x = torch.cat([*(state[name].expand(b, -1, -1) for name in prefix), x], dim=1) + state["pos_embed"]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for i in range(depth):
        p = f"blocks.{i}"
        h = _norm(x, state, f"{p}.norm1")
        t, d = h.shape[1], h.shape[2]
        qkv = F.linear(h, state[f"{p}.attn.qkv.weight"], state.get(f"{p}.attn.qkv.bias"))
        q, k, v = qkv.reshape(b, t, 3, num_heads, d // num_heads).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1) * (d // num_heads) ** -0.5).softmax(dim=-1)
        mixed = (weights @ v).transpose(1, 2).reshape(b, t, d)
        x = x + F.linear(mixed, state[f"{p}.attn.proj.weight"], state[f"{p}.attn.proj.bias"])
        h = F.gelu(F.linear(_norm(x, state, f"{p}.norm2"), state[f"{p}.mlp.fc1.weight"], state[f"{p}.mlp.fc1.bias"]))
        x = x + F.linear(h, state[f"{p}.mlp.fc2.weight"], state[f"{p}.mlp.fc2.bias"])
    return _norm(x, state, "norm")
