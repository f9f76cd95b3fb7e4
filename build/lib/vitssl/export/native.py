"""The vitssl-native export: one ``model.safetensors`` holding the network under vitssl's own names.

Keys are those of the method's network (``backbone.model.blocks.0.attn.qkv.weight``, and with heads
``head.mlp.0.weight``...), the run's config rides along in the safetensors header (``vitssl_config``) and in
``config.yaml``, so ``vitssl.models.weights.load_backbone_weights`` or ``build_method`` can take it back.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file
from torch import Tensor

from vitssl.config import to_dict
from vitssl.export.source import ExportSource, max_abs_diff, random_images

NATIVE_FILE = "model.safetensors"
HEADS_FILE = "heads.safetensors"


def _contiguous(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


def write_native(source: ExportSource, out: Path, with_heads: bool) -> Path:
    """Write ``out/model.safetensors`` (backbone, plus heads with ``with_heads``) and ``out/config.yaml``."""
    out.mkdir(parents=True, exist_ok=True)
    state = (
        source.network.state_dict()
        if with_heads
        else {f"backbone.{k}": v for k, v in source.backbone.state_dict().items()}
    )
    config = to_dict(source.cfg)
    meta = {"format": "pt", "vitssl_config": json.dumps(config), "network": source.which}
    save_file(_contiguous(state), str(out / NATIVE_FILE), metadata=meta)
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return out / NATIVE_FILE


def write_heads(source: ExportSource, out: Path) -> Path | None:
    """Write the heads (vitssl names, no backbone) to ``out/heads.safetensors``; None when there are none."""
    heads = source.head_state()
    if not heads:
        return None
    save_file(_contiguous(heads), str(out / HEADS_FILE), metadata={"format": "pt", "network": source.which})
    return out / HEADS_FILE


def check_native(source: ExportSource, path: Path) -> dict[str, float]:
    """Load the file into a copy of the backbone through :func:`load_backbone_weights` and compare features."""
    import copy

    from vitssl.models.weights import load_backbone_weights

    clone = copy.deepcopy(source.backbone)
    with torch.no_grad():
        for p in clone.parameters():
            p.zero_()  # so that a tensor the loader skipped shows up as a difference
    load_backbone_weights(clone, path, strict=True)
    x = random_images(source.image_size)
    with torch.no_grad():
        ref, got = source.backbone(x), clone.eval()(x)
    return {
        "safetensors load_backbone_weights": max(
            max_abs_diff(ref.tokens, got.tokens), max_abs_diff(ref.pooled, got.pooled)
        )
    }
