"""The authors' released weights, read as they were published: recognised by their key names, their architecture
read off the tensor shapes, renamed to timm's names and loaded strictly into a vitssl backbone.

Layouts (facts from the papers' public code and files; no code of theirs is used):

* DINO (Caron et al. 2021, arXiv 2104.14294) ViTs: ``dino_deitsmall16_pretrain.pth`` and friends are plain state
  dicts whose names are timm's own (``cls_token``, ``pos_embed`` (1, 1 + N, D), ``patch_embed.proj.*``,
  ``blocks.{i}.norm1/attn.qkv/attn.proj/norm2/mlp.fc1/mlp.fc2.*``, ``norm.*``); the full training checkpoints
  hold ``{"teacher": ..., "student": ...}`` with ``module.`` / ``backbone.`` prefixes and DINO-head tensors
  (``head.*``). Heads are 64 wide (ViT-S: 6, ViT-B: 12); evaluated with DINO's position-embedding interpolation.
* SiT (Atito et al. 2021, arXiv 2104.03602): DINO's block names, plus ``rot_token`` and ``contrastive_token``
  (each (1, 1, D)) before the patches, ``pos_embed`` (1, 2 + N, D), and heads (``rot_head``,
  ``contrastive_head``, ``pre_logits_*``, ``convTrans``, the task weights ``rot_w``...) that are dropped. The
  two tokens become timm's class token and one register token: the layout of vitssl's own SiT backbone.
* EsViT (Li et al. 2021, arXiv 2106.09785) Swins: the Swin paper's layout (``layers.{i}.blocks.{j}...``, patch
  merging at the end of a stage), converted by timm's own ``swin_transformer.checkpoint_filter_fn``; DINO and
  region heads (``head.*``, ``head_dense.*``) are dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from vitssl.errors import VitsslError
from vitssl.models.backbones import Backbone, PosInterpolation, build_backbone
from vitssl.models.weights import LoadReport, load_state

__all__ = ["Release", "load_release", "recognise_release", "unwrap_checkpoint"]

Layout = Literal["dino_vit", "sit_vit", "esvit_swin"]
METHOD_OF: dict[str, str] = {"dino_vit": "dino", "sit_vit": "sit", "esvit_swin": "esvit"}  # the config's method
DINO_HEAD_DIM = 64  # DINO's ViT-S/16, S/8, B/16, B/8 all use 64-wide heads (DeiT sizes)
# Tensors of the authors' networks that are not part of the backbone.
_HEAD_PREFIXES = (
    "head.",
    "head_dense.",
    "rot_head.",
    "contrastive_head.",
    "pre_logits_rot.",
    "pre_logits_contrastive.",
)
_HEAD_NAMES = ("convTrans.weight", "convTrans.bias", "rot_w", "contrastive_w", "recons_w")
# Presets whose widths match a release (the ViT widths of DeiT/ViT; EsViT's Swin-T/S/B).
_VIT_PRESETS = {192: "vit_tiny", 384: "vit_small", 768: "vit_base", 1024: "vit_large"}
_SWIN_PRESETS: dict[tuple[int, tuple[int, ...]], str] = {
    (96, (2, 2, 6, 2)): "swin_tiny",
    (96, (2, 2, 18, 2)): "swin_small",
    (128, (2, 2, 18, 2)): "swin_base",
}
EVAL_SIZE = 224  # the resolution every DINO, SiT-ImageNet and EsViT release was trained and evaluated at


@dataclass
class Release:
    """A recognised release: how to build its backbone, and its tensors.

    Attributes:
        layout: ``dino_vit``, ``sit_vit`` or ``esvit_swin``.
        backbone: The preset or timm name the backbone is built from (also ``model.backbone`` of the config).
        kwargs: The other :func:`build_backbone` arguments (patch and image size, depth, widths...).
        pos_interpolation: How position embeddings follow the input size (DINO's formula for DINO ViTs).
        image_size: The native resolution (the position grid times the patch, or 224 for a Swin).
        state: The backbone's tensors, timm's names (EsViT: the Swin paper's, converted when loaded).
        where: The file (and network inside it) they came from.
    """

    layout: Layout
    backbone: str
    kwargs: dict[str, Any]
    pos_interpolation: PosInterpolation
    image_size: int
    state: dict[str, Tensor] = field(repr=False)
    where: str

    def build(self) -> Backbone:
        """The backbone at random initialisation (seed it first for a reproducible one)."""
        if self.layout == "sit_vit":
            from vitssl.methods.sit.heads import SiTBackbone

            base = build_backbone(self.backbone, reg_tokens=1, **self.kwargs)
            return SiTBackbone(base.model, "contrastive")
        return build_backbone(self.backbone, pos_interpolation=self.pos_interpolation, **self.kwargs)


def unwrap_checkpoint(obj: object, where: str) -> tuple[dict[str, Tensor], str]:
    """The backbone's tensors of a loaded release file: the teacher of a training checkpoint (what DINO and EsViT
    evaluate), else the ``model`` / ``state_dict`` entry, else the student, else the file itself; ``module.`` and
    ``backbone.`` prefixes removed and head tensors dropped."""
    if not isinstance(obj, Mapping):
        raise VitsslError(f"{where} holds no state dict ({type(obj).__name__}); pass a weights file")
    entries: Mapping[str, Any] = obj
    for key in ("teacher", "model", "state_dict", "student"):
        if isinstance(entries.get(key), Mapping):
            entries, where = entries[key], f"{where} ({key})"
            break
    tensors = {k: v for k, v in entries.items() if isinstance(v, Tensor)}
    if not tensors:
        raise VitsslError(f"{where} holds no tensors; pass a DINO, SiT or EsViT weights file, an export or a run")
    names = {re.sub(r"^(module\.)+", "", k): v for k, v in tensors.items()}
    if any(k.startswith("backbone.") for k in names):  # a whole network (backbone + head): keep the backbone
        names = {k[len("backbone.") :]: v for k, v in names.items() if k.startswith("backbone.")}
    kept = {k: v for k, v in names.items() if not (k.startswith(_HEAD_PREFIXES) or k in _HEAD_NAMES)}
    return kept, where


def _count(state: Mapping[str, Tensor], pattern: str) -> int:
    indices = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(indices) + 1 if indices else 0


def _vit(state: dict[str, Tensor], layout: Layout, where: str, arch: str | None) -> Release:
    prefix = 2 if layout == "sit_vit" else 1
    pos, proj = state.get("pos_embed"), state.get("patch_embed.proj.weight")
    if pos is None or proj is None or pos.ndim != 3 or proj.ndim != 4:
        raise VitsslError(f"{where} has no pos_embed (1, T, D) or patch_embed.proj.weight; is it a ViT release?")
    dim, patches = int(pos.shape[-1]), int(pos.shape[1]) - prefix
    side, patch = math.isqrt(max(patches, 0)), int(proj.shape[-1])
    if side * side != patches:
        raise VitsslError(f"{where}: pos_embed has {patches} patch positions, not a square grid; pass --arch")
    depth = _count(state, r"blocks\.(\d+)\.")
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    if depth == 0 or fc1 is None:
        raise VitsslError(f"{where} has no blocks.0.* tensors; is it a ViT release?")
    kwargs: dict[str, Any] = {"patch_size": patch, "img_size": side * patch, "depth": depth}
    if arch is None:
        arch = _VIT_PRESETS.get(dim, "vit_small")
        kwargs.update(
            embed_dim=dim,
            num_heads=max(1, dim // DINO_HEAD_DIM),
            mlp_ratio=int(fc1.shape[0]) / dim,
            qkv_bias="blocks.0.attn.qkv.bias" in state,
        )
    # DINO's weights were evaluated with DINO's interpolation; SiT's at one size (timm's is then never used)
    interpolation: PosInterpolation = "dino" if layout == "dino_vit" else "timm"
    return Release(layout, arch, kwargs, interpolation, side * patch, state, where)


def _swin(state: dict[str, Tensor], where: str, arch: str | None) -> Release:
    proj = state.get("patch_embed.proj.weight")
    if proj is None:
        raise VitsslError(f"{where} has no patch_embed.proj.weight; is it a Swin release?")
    stages = _count(state, r"layers\.(\d+)\.")
    depths = tuple(_count(state, rf"layers\.{i}\.blocks\.(\d+)\.") for i in range(stages))
    tables = [state[f"layers.{i}.blocks.0.attn.relative_position_bias_table"] for i in range(stages)]
    window = (math.isqrt(int(tables[0].shape[0])) + 1) // 2
    dim, patch = int(proj.shape[0]), int(proj.shape[-1])
    kwargs: dict[str, Any] = {"patch_size": patch, "img_size": EVAL_SIZE, "window_size": window}
    preset = _SWIN_PRESETS.get((dim, depths))
    if arch is None:
        arch = preset or "swin_tiny"
        if preset is None:
            fc1 = state["layers.0.blocks.0.mlp.fc1.weight"]
            kwargs.update(
                embed_dim=dim,
                depths=depths,
                num_heads=tuple(int(t.shape[1]) for t in tables),
                mlp_ratio=int(fc1.shape[0]) / dim,
            )
    return Release("esvit_swin", arch, kwargs, "timm", EVAL_SIZE, state, where)


def recognise_release(state: dict[str, Tensor], where: str, arch: str | None = None) -> Release:
    """Which release ``state`` (from :func:`unwrap_checkpoint`) is, and the backbone it needs.

    Args:
        state: The backbone's tensors under the authors' names.
        where: The file, for messages.
        arch: A preset or timm name that overrides the inferred widths and heads (patch size, image size and
            depth are still read from the tensors).

    Raises:
        VitsslError: The keys match none of the layouts (the message names a few of them).
    """
    if "rot_token" in state and "contrastive_token" in state:
        renamed = dict(state)
        renamed["cls_token"] = renamed.pop("rot_token")
        renamed["reg_token"] = renamed.pop("contrastive_token")
        return _vit(renamed, "sit_vit", where, arch)
    if "cls_token" in state and any(k.startswith("blocks.") for k in state):
        return _vit(state, "dino_vit", where, arch)
    if any(k.endswith("attn.relative_position_bias_table") and k.startswith("layers.") for k in state):
        return _swin(state, where, arch)
    shown = ", ".join(sorted(state)[:4])
    raise VitsslError(
        f"{where} is no known layout (keys {shown}...); pass a DINO/SiT ViT or EsViT Swin release, a vitssl run, "
        "an export folder, timm:NAME or hf:FOLDER"
    )


def load_release(release: Release, at_init: bool = False, seed: int = 0) -> tuple[Backbone, LoadReport | None]:
    """Build the release's backbone and load its tensors strictly (every missing, unexpected or reshaped tensor
    named in one line); with ``at_init``, the same architecture at random initialisation from ``seed``."""
    torch.manual_seed(seed)
    backbone = release.build()
    if at_init:
        return backbone, None
    state = release.state
    if release.layout == "esvit_swin":  # timm's own converter moves patch merging to the start of the next stage
        from timm.models.swin_transformer import checkpoint_filter_fn

        state = checkpoint_filter_fn(dict(state), backbone.model)
    return backbone, load_state(backbone, state, release.where, strict=True)
