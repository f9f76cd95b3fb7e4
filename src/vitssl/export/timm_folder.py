"""The timm export: ``model.safetensors`` under timm's names plus timm's hub ``config.json``.

The folder follows timm's own hub layout (``architecture``, ``model_args``, ``pretrained_cfg`` in
``config.json``; ``timm.models._hub.load_model_config_from_path``), so it loads three ways with nothing of vitssl
installed::

    timm.create_model(architecture, pretrained=True, num_classes=0,
                      pretrained_cfg_overlay=dict(file="OUT/model.safetensors"), **model_args)
    timm.create_model("local-dir:OUT", pretrained=True)
    transformers.AutoModel.from_pretrained("OUT")   # TimmWrapperModel (see vitssl.export.hf)

The weights are the training backbone's ``Backbone.model`` state dict as it is: vitssl keeps the timm model
whole, so no name is translated and nothing can be lost in a mapping.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from vitssl.errors import VitsslError
from vitssl.export.source import ExportSource, max_abs_diff, random_images
from vitssl.export.timm_spec import TimmSpec, pretrained_cfg, timm_spec
from vitssl.methods.sit.heads import SiTBackbone
from vitssl.models.backbones import Backbone

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TIMM_TOLERANCE = 1e-5
# transformers' auto classes pick TimmWrapperModel from this model type; timm ignores the key.
HF_MODEL_TYPE = "timm_wrapper"


def pooled_recipe(source: ExportSource) -> str:
    """How to get vitssl's pooled feature from the timm model's ``forward_features`` output ``x``."""
    backbone = source.backbone
    if backbone.is_swin:
        return "x.mean(dim=(1, 2)) (mean of the final tokens; also timm's forward_head and HF pooler_output)"
    if isinstance(backbone, SiTBackbone):
        return {
            "contrastive": "x[:, 1] (SiT's contrastive token: timm's register token)",
            "rotation": "x[:, 0] (SiT's rotation token: timm's class token; also forward_head and pooler_output)",
            "patch_mean": "x[:, 2:].mean(dim=1) (mean of the patch tokens)",
            "tokens_mean": "x.mean(dim=1) (mean of all final tokens)",
        }[backbone.feature]
    return "x[:, 0] ([CLS] after the final norm; also timm's forward_head and HF pooler_output)"


def hub_config(source: ExportSource, spec: TimmSpec) -> dict[str, Any]:
    """timm's hub ``config.json`` for the backbone, with a ``vitssl`` section recording where it came from."""
    return {
        "architecture": spec.architecture,
        "model_type": HF_MODEL_TYPE,
        "num_classes": 0,
        "num_features": source.backbone.embed_dim,
        "global_pool": "avg" if spec.is_swin else "token",
        "model_args": spec.model_args,
        "pretrained_cfg": pretrained_cfg(source.cfg),
        "vitssl": {
            "method": source.cfg.method,
            "network": source.which,
            "run": str(source.checkpoint),
            "pooled": pooled_recipe(source),
        },
    }


def backbone_state(source: ExportSource) -> dict[str, Tensor]:
    """The timm model's tensors, contiguous and detached (safetensors stores exactly these)."""
    return {k: v.detach().contiguous().clone() for k, v in source.backbone.model.state_dict().items()}


def write_timm_folder(source: ExportSource, out: Path) -> TimmSpec:
    """Write ``model.safetensors`` and ``config.json`` into ``out``; return the recipe."""
    spec = timm_spec(source.cfg)
    out.mkdir(parents=True, exist_ok=True)
    # "format": "pt" is what transformers expects in the safetensors header of PyTorch weights.
    save_file(backbone_state(source), str(out / WEIGHTS), metadata={"format": "pt"})
    (out / CONFIG).write_text(json.dumps(hub_config(source, spec), indent=2) + "\n")
    return spec


def wrap_like(source: ExportSource, model: torch.nn.Module) -> Backbone:
    """``model`` seen through the same vitssl interface as the exported backbone (same pooled feature)."""
    if isinstance(source.backbone, SiTBackbone):
        return SiTBackbone(model, source.backbone.feature)
    return Backbone(model)


def compare_backbones(source: ExportSource, other: Backbone) -> float:
    """Max abs difference of the final tokens and of the pooled features on a fixed random batch."""
    x = random_images(source.image_size)
    with torch.no_grad():
        ref, got = source.backbone(x), other.eval()(x)
    return max(max_abs_diff(ref.tokens, got.tokens), max_abs_diff(ref.pooled, got.pooled))


def check_timm_folder(source: ExportSource, out: Path, spec: TimmSpec) -> dict[str, float]:
    """Load the export back the documented timm way and compare with the training backbone.

    (``timm.create_model("local-dir:OUT", pretrained=True)`` reads the same two files; the tests cover it.)

    Raises:
        VitsslError: A key is missing or extra, or the features differ by more than :data:`TIMM_TOLERANCE`.
    """
    model = timm.create_model(
        spec.architecture,
        pretrained=True,
        pretrained_cfg_overlay={"file": str(out / WEIGHTS)},
        num_classes=0,
        **spec.model_args,
    )
    keys, saved = set(model.state_dict()), set(load_file(str(out / WEIGHTS)))
    if keys != saved:
        raise VitsslError(
            f"timm's {spec.architecture} does not take the exported weights (missing {sorted(keys - saved)[:3]}, "
            f"unexpected {sorted(saved - keys)[:3]}); please report this"
        )
    diff = compare_backbones(source, wrap_like(source, model))
    if diff > TIMM_TOLERANCE:
        raise VitsslError(
            f"the timm export differs from the training backbone by {diff:.2e} (> {TIMM_TOLERANCE}); this "
            f"backbone cannot be expressed exactly as timm's {spec.architecture}; use --format safetensors"
        )
    return {"timm create_model": diff}
