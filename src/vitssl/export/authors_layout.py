"""Exports in the authors' own layouts: ``--format dino`` (DINO's ``VisionTransformer``, Caron et al. 2021) and
``--format sit`` (SiT's ``VisionTransformer_SiT``, Atito et al. 2021); ``--format esvit`` is refused in one line.

Written: ``<name>.pth``, a plain state dict under the authors' names that their class loads with
``strict=True`` (``torch.load(weights_only=True)`` reads it), and ``<name>.json`` with their constructor
arguments. timm's ViT names are DINO's for every backbone tensor, so the DINO file is timm's state dict minus
nothing; SiT's two prefix tokens are timm's class and register tokens, renamed ``rot_token`` and
``contrastive_token`` (SiT's heads are not part of the backbone and are not written). The export is read back
and run through an independent functional ViT (:mod:`vitssl.export.vit_reference`); its tokens must match the
training backbone's within 1e-4 at the run's size. At other sizes DINO's class interpolates position embeddings
its own way; ``vitssl.load_backbone`` on the file does the same (``pos_interpolation="dino"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vitssl.errors import VitsslError
from vitssl.export.source import ExportSource, max_abs_diff, random_images
from vitssl.export.vit_reference import EPS, reference_tokens
from vitssl.methods.sit.heads import SiTBackbone

AUTHORS_TOLERANCE = 1e-4


@dataclass(frozen=True)
class AuthorLayout:
    """One of the authors' layouts.

    Attributes:
        cls: The authors' class that loads the file.
        tokens: timm's prefix-token names -> the authors' names, in token order.
        refusal: Why this layout is not written (None: it is).
    """

    cls: str
    tokens: dict[str, str]
    refusal: str | None = None

    @property
    def two_tokens(self) -> bool:
        """Whether the layout has SiT's rotation and contrastive tokens rather than one [CLS]."""
        return len(self.tokens) == 2


LAYOUTS: dict[str, AuthorLayout] = {
    "dino": AuthorLayout("VisionTransformer", {"cls_token": "cls_token"}),
    "sit": AuthorLayout("VisionTransformer_SiT", {"cls_token": "rot_token", "reg_token": "contrastive_token"}),
    "esvit": AuthorLayout(
        "SwinTransformer",
        {},
        refusal="--format esvit is not written: EsViT's Swin layout (patch merging at the end of a stage) is what "
        "timm's Swin converter reads; export --format timm or safetensors (vitssl.load_backbone reads EsViT files)",
    ),
}
AUTHOR_FORMATS = tuple(LAYOUTS)


def _refuse(source: ExportSource, fmt: str) -> None:
    """One line saying why this backbone has no exact form in ``fmt``, before anything is written."""
    backbone, layout = source.backbone, LAYOUTS[fmt]
    if layout.refusal is not None:
        raise VitsslError(layout.refusal)
    if backbone.is_swin:
        raise VitsslError(f"--format {fmt} needs a ViT backbone; this run has a Swin: use --format timm")
    is_sit = isinstance(backbone, SiTBackbone)
    if is_sit and not layout.two_tokens:
        raise VitsslError(f"a SiT backbone has two prefix tokens, {layout.cls} one; use --format sit or timm")
    if layout.two_tokens and not is_sit:
        raise VitsslError(f"--format {fmt} needs a SiT run (rotation and contrastive tokens); use --format dino")
    model: Any = backbone.model
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    if any(abs(m.eps - EPS) > 1e-12 for m in norms) or not norms:
        raise VitsslError(f"--format {fmt}: the authors' ViT uses LayerNorm eps {EPS}; this backbone does not")
    if model.patch_embed.proj.weight.shape[-1] != model.patch_embed.proj.weight.shape[-2]:
        raise VitsslError(f"--format {fmt}: the authors' ViT has square patches; use --format timm")


def authors_state(source: ExportSource, fmt: str) -> dict[str, Tensor]:
    """The backbone's tensors under the authors' names; anything their class lacks is a one-line refusal."""
    state = {k: v.detach().contiguous().clone() for k, v in source.backbone.model.state_dict().items()}
    names = LAYOUTS[fmt].tokens
    state = {names.get(k, k): v for k, v in state.items()}
    allowed = ("cls_token", "rot_token", "contrastive_token", "pos_embed", "patch_embed.proj.", "blocks.", "norm.")
    block_parts = (".norm1.", ".attn.qkv.", ".attn.proj.", ".norm2.", ".mlp.fc1.", ".mlp.fc2.")
    extra = [
        k
        for k in state
        if not k.startswith(allowed) or (k.startswith("blocks.") and not any(p in k for p in block_parts))
    ]
    if extra:
        raise VitsslError(
            f"--format {fmt} cannot express {', '.join(extra[:3])} (not in the authors' ViT); use --format timm"
        )
    return state


def constructor_args(source: ExportSource, state: dict[str, Tensor]) -> dict[str, Any]:
    """The keyword arguments of the authors' ``VisionTransformer`` (SiT: ``VisionTransformer_SiT``)."""
    model: Any = source.backbone.model
    dim = int(state["pos_embed"].shape[-1])
    grid = model.patch_embed.grid_size
    patch = int(source.backbone.patch_size)
    return {
        "img_size": [int(grid[0]) * patch],
        "patch_size": patch,
        "in_chans": 3,
        "num_classes": 0,
        "embed_dim": dim,
        "depth": len(model.blocks),
        "num_heads": int(model.blocks[0].attn.num_heads),
        "mlp_ratio": int(state["blocks.0.mlp.fc1.weight"].shape[0]) / dim,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state,
        "qk_scale": None,
        "norm_layer": f"partial(nn.LayerNorm, eps={EPS})",
    }


def write_authors(source: ExportSource, fmt: str, out: Path) -> tuple[list[Path], dict[str, float]]:
    """Write ``<name>.pth`` and ``<name>.json`` into ``out`` and check them; returns (files, checks)."""
    _refuse(source, fmt)
    state = authors_state(source, fmt)
    args = constructor_args(source, state)
    name = f"{source.cfg.name}_{fmt}_{source.which}"
    weights, config = out / f"{name}.pth", out / f"{name}.json"
    torch.save(state, weights)
    cls = LAYOUTS[fmt].cls
    config.write_text(json.dumps({"class": cls, "kwargs": args, "pooled": _pooled(source, fmt)}, indent=2) + "\n")
    return [weights, config], check_authors(source, fmt, weights, args)


def _pooled(source: ExportSource, fmt: str) -> str:
    if not LAYOUTS[fmt].two_tokens:
        return "model(x): the [CLS] after the final norm"
    feature = source.backbone.feature if isinstance(source.backbone, SiTBackbone) else "contrastive"
    return {
        "contrastive": "model.forward_features(x)[:, 1] (the contrastive token)",
        "rotation": "model.forward_features(x)[:, 0] (the rotation token)",
        "patch_mean": "model.forward_features(x)[:, 2:].mean(1)",
        "tokens_mean": "model.forward_features(x).mean(1)",
    }[feature]


def _sit_pooled(source: ExportSource, tokens: Tensor) -> Tensor:
    """SiT's pooled feature, as the run chose it, read from the reference tokens."""
    backbone = source.backbone
    assert isinstance(backbone, SiTBackbone)  # _refuse lets only SiT backbones through --format sit
    return {
        "contrastive": lambda: tokens[:, backbone.contrastive_slot],
        "rotation": lambda: tokens[:, 0],
        "patch_mean": lambda: tokens[:, 2:].mean(dim=1),
        "tokens_mean": lambda: tokens.mean(dim=1),
    }[backbone.feature]()


def check_authors(source: ExportSource, fmt: str, path: Path, args: dict[str, Any]) -> dict[str, float]:
    """Read the file back (``weights_only=True``), run the functional reference ViT on it and compare the tokens
    and the pooled feature with the training backbone at the run's size."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    layout = LAYOUTS[fmt]
    prefix = tuple(layout.tokens.values())
    x = random_images(int(args["img_size"][0]))
    with torch.no_grad():
        tokens = reference_tokens(state, x, prefix, int(args["num_heads"]))
        ref = source.backbone(x)
        full = source.backbone.forward_features(x)
        pooled = _sit_pooled(source, tokens) if layout.two_tokens else tokens[:, 0]
    diffs = {
        f"{fmt} reference ViT tokens": max_abs_diff(full, tokens),
        f"{fmt} pooled": max_abs_diff(ref.pooled, pooled),
    }
    worst = max(diffs.values())
    if worst > AUTHORS_TOLERANCE:
        raise VitsslError(
            f"the {fmt} export differs from the training backbone by {worst:.2e} (> {AUTHORS_TOLERANCE}); "
            "use --format timm or safetensors"
        )
    return diffs
