"""Helpers shared by the evaluation protocols: loading a backbone, block features, images and schedules.

The linear-probe feature follows DINO (Caron et al. 2021, arXiv 2104.14294, appendix: the [CLS] tokens of the
last n blocks, each through the final norm, optionally with the mean of the last block's patch tokens) and
EsViT (Li et al. 2021, arXiv 2106.09785: the token means of the last 4 Swin blocks).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from vitssl.config import PretrainConfig
from vitssl.data.images import load_rgb
from vitssl.errors import VitsslError
from vitssl.models.backbones import Backbone


def load_backbone(
    checkpoint: str | Path, at_init: bool = False, device: str = "cpu"
) -> tuple[PretrainConfig, Backbone]:
    """The evaluation backbone (the teacher where the method has one) of a run folder or checkpoint, in eval mode.

    Args:
        checkpoint: A run folder (its last.pt) or a checkpoint file written by ``vitssl pretrain``.
        at_init: Rebuild the same network at initialisation (same config and seed) instead of loading weights.
        device: Where to put the backbone.
    """
    from vitssl.eval.knn_eval import load_method

    cfg, method = load_method(checkpoint, at_init=at_init)
    backbone = method.eval_backbone().to(device).eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    return cfg, backbone


def run_dir_of(checkpoint: str | Path) -> Path:
    """The run folder a checkpoint belongs to (the folder itself, or the file's parent)."""
    path = Path(checkpoint)
    return path if path.is_dir() else path.parent


def is_swin(backbone: Backbone) -> bool:
    """Whether the backbone is a Swin Transformer (multi-stage, no [CLS] token)."""
    flag = getattr(backbone, "is_swin", None)
    if flag is not None:
        return bool(flag)
    return hasattr(backbone.model, "layers") and not hasattr(backbone.model, "blocks")


def blocks_of(backbone: Backbone) -> list[nn.Module]:
    """All transformer blocks in forward order (Swin: every stage's blocks, flattened)."""
    model: Any = backbone.model  # timm submodules are reached by attribute
    if is_swin(backbone):
        return [block for layer in model.layers for block in layer.blocks]
    return list(model.blocks)


def block_features(backbone: Backbone, images: Tensor, n: int, avgpool: bool = False) -> Tensor:
    """The linear-probe feature: pooled outputs of the last `n` blocks, concatenated, (B, sum of widths).

    ViT (DINO): [CLS] of each of the last n blocks through the final norm; with `avgpool` also the mean of the
    last block's patch tokens (DINO's choice for ViT-B). Swin (EsViT): the token mean of each of the last n
    blocks (see ``Backbone.intermediate``, which computes them with forward hooks).
    """
    blocks = blocks_of(backbone)
    if not 1 <= n <= len(blocks):
        raise VitsslError(f"--n-last-blocks must lie in 1..{len(blocks)} for this backbone, got {n}")
    if avgpool and is_swin(backbone):
        raise VitsslError("--avgpool is for ViT; Swin features are token means already")
    return torch.cat(list(backbone.intermediate(images, n, patch_mean=avgpool)), dim=1)


def default_n_last_blocks(backbone: Backbone) -> tuple[int, bool]:
    """The papers' defaults: ViT-S and smaller n=4; ViT-B and larger n=1 + patch mean; Swin n=4 token means."""
    if is_swin(backbone):
        return min(4, len(blocks_of(backbone))), False
    if backbone.embed_dim >= 768:
        return 1, True
    return min(4, len(blocks_of(backbone))), False


def load_image(path: str | Path) -> Image.Image:
    """An RGB image, or a one-line error naming the file when it is missing or not an image."""
    path = Path(path)
    if not path.is_file():
        raise VitsslError(f"image {path} does not exist; pass the path of an image file")
    return load_rgb(path)


def image_to_tensor(
    image: Image.Image, mean: list[float], std: list[float], multiple: int, resize: int | None = None
) -> Tensor:
    """A (1, 3, H, W) normalised tensor; the short side optionally resized, both sides cropped to `multiple`."""
    if resize:
        w, h = image.size
        scale = resize / min(w, h)
        image = image.resize(
            (max(multiple, round(w * scale)), max(multiple, round(h * scale))), Image.Resampling.BICUBIC
        )
    w, h = image.size
    cw, ch = (w // multiple) * multiple, (h // multiple) * multiple
    if cw == 0 or ch == 0:
        raise VitsslError(f"image of {w}x{h} px is smaller than one {multiple} px patch; use --resize")
    left, top = (w - cw) // 2, (h - ch) // 2
    image = image.crop((left, top, left + cw, top + ch))
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    return ((array - m) / s).unsqueeze(0)


def denormalise(images: Tensor, mean: list[float], std: list[float]) -> np.ndarray:
    """(B, 3, H, W) normalised tensor -> (B, H, W, 3) float array in [0, 1] for drawing."""
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (images.detach().cpu() * s + m).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def cosine_lr(step: int, total: int, peak: float, warmup: int = 0, final: float = 0.0) -> float:
    """Per-iteration linear warm-up from 0, then cosine from `peak` to `final`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return final + 0.5 * (peak - final) * (1 + math.cos(math.pi * min(1.0, progress)))


def pick_device(name: str) -> torch.device:
    """'auto', 'cpu', 'cuda' or 'cuda:N', with a clear error when CUDA is asked for but absent."""
    from vitssl.engine.trainer import resolve_device

    return resolve_device(name)
