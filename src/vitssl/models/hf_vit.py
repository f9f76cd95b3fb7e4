"""transformers' ``ViTModel`` layout (e.g. ``facebook/dino-vits16``, the DINO weights as converted for the Hub)
renamed to timm's ViT names, so that the same timm module vitssl uses runs them.

The correspondence is the ViT paper's block (Dosovitskiy et al. 2021): ``embeddings.cls_token`` /
``position_embeddings`` / ``patch_embeddings.projection`` are timm's ``cls_token`` / ``pos_embed`` /
``patch_embed.proj``; each ``encoder.layer.{i}`` has ``layernorm_before`` (``norm1``), separate ``query``,
``key``, ``value`` projections (stacked into timm's single ``attn.qkv``, in that order), ``attention.output.dense``
(``attn.proj``), ``layernorm_after`` (``norm2``), ``intermediate.dense`` (``mlp.fc1``) and ``output.dense``
(``mlp.fc2``); the final ``layernorm`` is ``norm``. ``pooler.*`` (a dense + tanh layer that DINO does not use) and
``embeddings.mask_token`` are dropped. The config's ``layer_norm_eps`` is kept (the Hub's DINO ports say 1e-12).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import torch
from torch import Tensor, nn

from vitssl.errors import VitsslError
from vitssl.models.backbones import Backbone, build_backbone

__all__ = ["build_from_vit_config", "vit_model_to_timm"]

_RENAMES = (
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"^layernorm\.", "norm."),
)
_QKV = re.compile(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$")
_DROPPED = ("pooler.", "embeddings.mask_token")


def vit_model_to_timm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A ``ViTModel`` state dict (``vit.`` prefix of the classification model allowed) under timm's names.

    Names that are neither ViTModel's nor dropped are kept as they are, so that a strict load names them.
    """
    state = {k.removeprefix("vit."): v for k, v in state.items() if not k.removeprefix("vit.").startswith(_DROPPED)}
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, value in state.items():
        if m := _QKV.match(key):
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        for pattern, repl in _RENAMES:
            if re.match(pattern, key):
                key = re.sub(pattern, repl, key)
                break
        out[key] = value
    for (block, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise VitsslError(f"encoder.layer.{block} lacks one of query/key/value {kind}; the ViTModel file is torn")
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return out


def build_from_vit_config(config: dict[str, Any]) -> Backbone:
    """A randomly initialised timm ViT with the shape of a ``ViTModel`` ``config.json``."""
    if config.get("hidden_act", "gelu") != "gelu":
        raise VitsslError(
            f"ViTModel with hidden_act={config['hidden_act']!r} is not timm's ViT; only gelu is supported"
        )
    dim = int(config.get("hidden_size", 768))
    return build_backbone(
        "vit_base",
        patch_size=int(config.get("patch_size", 16)),
        img_size=int(config.get("image_size", 224)),
        depth=int(config.get("num_hidden_layers", 12)),
        embed_dim=dim,
        num_heads=int(config.get("num_attention_heads", 12)),
        mlp_ratio=int(config.get("intermediate_size", 4 * dim)) / dim,
        qkv_bias=bool(config.get("qkv_bias", True)),
        norm_layer=functools.partial(nn.LayerNorm, eps=float(config.get("layer_norm_eps", 1e-12))),
    )
