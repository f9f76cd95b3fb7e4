"""The timm recipe of a run's backbone: architecture name, constructor arguments and the data config.

``vitssl.models.backbones.build_backbone`` turns ``model.*`` settings into a ``timm.create_model`` call; here the
same settings are turned into the plain-JSON form that timm's hub format stores in ``config.json``
(``architecture``, ``model_args``, ``pretrained_cfg``; see timm's ``_hub.py``, ``load_model_config_from_path``).
The exporters check the recipe numerically, so a drift between the two is caught, not shipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vitssl.config import PretrainConfig
from vitssl.methods.registry import method_info
from vitssl.models.backbones import PRESET_KWARGS, PRESETS


@dataclass(frozen=True)
class TimmSpec:
    """``timm.create_model(architecture, num_classes=0, **model_args)`` builds the backbone's timm model.

    Attributes:
        architecture: A timm model name, e.g. ``vit_tiny_patch16_224``.
        model_args: JSON-ready keyword arguments (tuples as lists).
        is_swin: Whether it is a Swin (pooled = mean of the final tokens) rather than a ViT.
    """

    architecture: str
    model_args: dict[str, Any]
    is_swin: bool


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def timm_spec(cfg: PretrainConfig) -> TimmSpec:
    """The timm recipe of the backbone that ``cfg`` trains (drop path omitted: it does nothing at inference).

    Mirrors ``build_backbone`` (presets, patch/img size, depth, window) plus what the method adds to its backbone
    (:attr:`vitssl.methods.registry.MethodInfo.timm_args`, e.g. SiT's register token).
    """
    m = cfg.model
    architecture = PRESETS.get(m.backbone, m.backbone)
    is_swin = architecture.startswith("swin")
    args: dict[str, Any] = {k: _jsonable(v) for k, v in PRESET_KWARGS.get(m.backbone, {}).items()}
    named = {"patch_size": m.patch_size, "img_size": m.img_size or cfg.crops.global_size, "depth": m.depth}
    if is_swin:
        named["window_size"] = m.window_size
        args["strict_img_size"] = False  # as training: any multiple of the patch size works
    else:
        args["dynamic_img_size"] = True  # as training: position embeddings interpolated to the input
    args.update({k: v for k, v in named.items() if v is not None})
    args.update(method_info(cfg.method).timm_args)  # e.g. SiT's contrastive token as a timm register token
    return TimmSpec(architecture, args, is_swin)


def crop_pct(size: int, resize: int) -> float:
    """timm's ``crop_pct`` for "resize the short side to ``resize``, centre-crop ``size``".

    timm resizes to ``floor(size / crop_pct)`` (``timm.data.transforms_factory``); the plain ratio can land a
    hair under ``resize`` in floating point, so it is nudged until the floor comes out exact.
    """
    pct = size / resize
    while math.floor(size / pct) < resize:
        pct = math.nextafter(pct, 0.0)
    return pct


def pretrained_cfg(cfg: PretrainConfig) -> dict[str, Any]:
    """timm's data config for the run's evaluation transform: bicubic resize, centre crop, normalisation.

    It is what ``timm.data.resolve_data_config`` and transformers' ``TimmWrapperImageProcessor`` read.
    """
    size = int(cfg.data.eval_size or cfg.crops.global_size)
    resize = int(cfg.data.eval_resize or size)
    return {
        "input_size": [3, size, size],
        "interpolation": "bicubic",
        "crop_pct": crop_pct(size, resize),
        "crop_mode": "center",
        "mean": list(cfg.data.mean),
        "std": list(cfg.data.std),
        "num_classes": 0,
        "fixed_input_size": False,
        "first_conv": "patch_embed.proj",
    }
