"""SiT: self-supervised vision transformer (Atito et al. 2021, "SiT: Self-supervised vIsion Transformer",
arXiv 2104.03602).

Original formulation (docs/methods.md sections 3.1-3.3, the default): two rotated, corrupted views per image go
through one ViT with a rotation token and a contrastive token; the network predicts each view's rotation,
pulls the two views' contrastive embeddings together (NT-Xent) and reconstructs the clean rotated view from the
patch tokens (L1 on all pixels). Learned task uncertainties weight the three losses.

Masked variant (section 3.4, ``sit.variant=masked``): no rotation; the student reconstructs only the corrupted
pixels and matches an EMA teacher that sees the clean views (symmetric InfoNCE); ``L = L_con + lambda L_rec``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from vitssl.config import PretrainConfig
from vitssl.data.batches import SiTBatch
from vitssl.data.views.multicrop import CropSpec, crop_spec
from vitssl.errors import VitsslError
from vitssl.losses.koleo import koleo_term
from vitssl.methods.base import Method, StepOutput
from vitssl.methods.diagnostics import feature_spread
from vitssl.methods.registry import MethodInfo, register_method
from vitssl.methods.sit.config import SiTConfig
from vitssl.methods.sit.corruptions import (
    BlurPatch,
    ColourDistortion,
    Corruption,
    CorruptionPipeline,
    GrayscalePatch,
    RandomDrop,
    RandomReplace,
)
from vitssl.methods.sit.heads import (
    ContrastiveHead,
    ReconstructionHead,
    RotationHead,
    SiTBackbone,
    build_sit_backbone,
)
from vitssl.methods.sit.losses import (
    FixedWeighting,
    UncertaintyWeighting,
    nt_xent,
    reconstruction_l1,
    rotation_loss,
    symmetric_info_nce,
)
from vitssl.methods.sit.views import SiTCollate, SiTViewTransform
from vitssl.methods.teacher import EMATeacher
from vitssl.optim import param_groups
from vitssl.schedules import StepState, cosine_schedule

NUM_VIEWS = 2
# a_t of the uncertainty weighting: 1 for the classification-type losses, 0.5 for the L1 (docs/methods.md 3.3)
UNCERTAINTY_SCALES = {"rot": 1.0, "con": 1.0, "rec": 0.5}
_TOKEN_NAMES = ("cls_token", "reg_token")
_POS_EMBED = "pos_embed"  # the 2021 code's no_weight_decay set is {pos_embed, the two tokens} (docs/methods.md 3.2)


# DINO's (blur p, solarize p) of its two global crops (Caron et al. 2021), used by sit.view_augment=dino.
DINO_GLOBAL_BLUR_SOLARIZE = ((1.0, 0.0), (0.1, 0.2))


def sit_crops(cfg: PretrainConfig) -> list[CropSpec]:
    """SiT's two views: random resized crop, flip, colour jitter (crops.* settings); no blur or solarize, or with
    ``sit.view_augment=dino`` DINO's blur and solarize of its two global crops (the masked variant's authors)."""
    c = cfg.crops
    if cfg.sit.view_augment == "dino":
        return [
            crop_spec(c, c.global_size, c.global_scale, blur_p=blur, solarize_p=solarize)
            for blur, solarize in DINO_GLOBAL_BLUR_SOLARIZE
        ]
    return [crop_spec(c, c.global_size, c.global_scale, blur_p=0.0, solarize_p=0.0)] * NUM_VIEWS


def _pair(values: list[float]) -> tuple[float, float]:
    return float(values[0]), float(values[1])


def corruption_pipeline(cfg: PretrainConfig) -> CorruptionPipeline:
    """The configured corruptions, in SiT's order (colour distortion of the whole view first, then grayscale
    patch, blur patch, random drop and random replace); those with probability 0 are left out. Keys left at None
    take the variant's defaults (``SiTConfig.resolved``)."""
    s = cfg.sit.resolved()
    mean, std = cfg.data.mean, cfg.data.std
    where = s.box_placement
    assert s.grayscale_p is not None and s.blur_p is not None and s.drop_area is not None  # resolved
    assert s.drop_fill is not None and s.replace_p is not None and s.replace_area is not None
    steps: list[Corruption] = [
        ColourDistortion(p=s.distort_p, strength=s.distort_strength),
        GrayscalePatch(p=s.grayscale_p, side=_pair(s.grayscale_side), placement=where),
        BlurPatch(
            p=s.blur_p,
            side=_pair(s.blur_side),
            kernel=(int(s.blur_kernel[0]), int(s.blur_kernel[1])),
            sigma=_pair(s.blur_sigma),
            placement=where,
        ),
        RandomDrop(
            p=s.drop_p,
            side=_pair(s.drop_side),
            area=_pair(s.drop_area),
            fill=s.drop_fill,
            mean=(mean[0], mean[1], mean[2]),
            std=(std[0], std[1], std[2]),
            placement=where,
        ),
        RandomReplace(p=s.replace_p, side=_pair(s.replace_side), area=_pair(s.replace_area), placement=where),
    ]
    return CorruptionPipeline([step for step in steps if step.p > 0], bool(s.replace_excludes_drop))


def sit_rotations(cfg: PretrainConfig) -> list[int]:
    """The allowed rotations: the configured ones, or only 0 in the masked variant (it has no rotation task)."""
    return [0] if cfg.sit.variant == "masked" else list(cfg.sit.rotations)


@dataclass
class SiTOutput:
    """The student's outputs on a batch of views: rotation logits, contrastive embedding, reconstruction, and the
    contrastive token the embedding is projected from (the k-NN feature of the presets)."""

    rotation: Tensor | None
    contrastive: Tensor
    reconstruction: Tensor | None
    token: Tensor


class SiTNetwork(nn.ModuleDict):
    """SiT backbone plus whichever of the heads ``rot``, ``con`` and ``rec`` it holds: one backbone pass, every
    head on its tokens (a module with a forward, so data parallelism can wrap the whole student)."""

    def forward(self, images: Tensor) -> SiTOutput:
        tokens = cast(SiTBackbone, self["backbone"]).tokens_by_role(images)
        rotation = self["rot"](tokens.rotation) if "rot" in self else None
        reconstruction = self["rec"](tokens.patches, tokens.grid) if "rec" in self else None
        return SiTOutput(rotation, self["con"](tokens.contrastive), reconstruction, tokens.contrastive)


class SiT(Method):
    """SiT's network, losses and (masked variant) EMA teacher, per docs/methods.md section 3."""

    name = "sit"

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        s = cfg.sit
        self.masked = s.variant == "masked"
        self.rotations = sit_rotations(cfg)
        self.use_rotation = len(self.rotations) > 1
        self.student = self._network(cfg.model.drop_path, heads=("rot", "con", "rec"))
        self.teacher: SiTNetwork | None = None
        self.ema: EMATeacher | None = None
        if self.masked:
            # The teacher sees clean views and only feeds the contrastive loss: backbone + projection.
            self.teacher = self._network(0.0, heads=("con",))
            self.ema = EMATeacher(self.teacher, self.student)
            self.weighting: UncertaintyWeighting | FixedWeighting = FixedWeighting(
                {"con": s.con_weight, "rec": s.rec_weight}
            )
        else:
            tasks = ["rot", "con", "rec"] if self.use_rotation else ["con", "rec"]
            if s.weighting == "uncertainty":
                self.weighting = UncertaintyWeighting({t: UNCERTAINTY_SCALES[t] for t in tasks}, s.uncertainty_init)
            else:
                fixed = {"rot": s.rot_weight, "con": s.con_weight, "rec": s.rec_weight}
                self.weighting = FixedWeighting({t: fixed[t] for t in tasks})

    def _network(self, drop_path: float, heads: tuple[str, ...]) -> SiTNetwork:
        cfg, s = self.cfg, self.cfg.sit
        m = cfg.model
        backbone = build_sit_backbone(
            m.backbone,
            m.patch_size,
            m.img_size or cfg.crops.global_size,
            m.depth,
            drop_path,
            s.knn_feature,
            s.contrastive_token,
        )
        net = SiTNetwork({"backbone": backbone})
        dim = backbone.embed_dim
        if "rot" in heads and self.use_rotation:
            net["rot"] = RotationHead(dim)
        if "con" in heads:
            net["con"] = ContrastiveHead(dim, s.proj_dim, s.proj_hidden_dim, s.proj_layers, s.proj_batch_norm)
        if "rec" in heads:
            net["rec"] = ReconstructionHead(
                dim, backbone.patch_size, s.rec_hidden_dim, kind=s.rec_head, mlp_layers=s.rec_mlp_layers
            )
        return net

    @staticmethod
    def backbone_of(net: nn.ModuleDict) -> SiTBackbone:
        """The SiT backbone of the student or the teacher."""
        return cast(SiTBackbone, net["backbone"])

    # -- data ----------------------------------------------------------------------------------------------
    @property
    def views(self) -> list[CropSpec]:
        return sit_crops(self.cfg)

    def train_transform(self) -> SiTViewTransform:
        return SiTViewTransform(
            self.views,
            corruption_pipeline(self.cfg),
            self.cfg.data.mean,
            self.cfg.data.std,
            self.rotations,
            blur_and_solarize=self.cfg.sit.view_augment == "dino",
        )

    def train_collate(self) -> SiTCollate:
        return SiTCollate(self.cfg.sit.replace_donor)

    def schedule(self, step: int, steps_per_epoch: int, total_steps: int) -> dict[str, float]:
        if not self.masked:
            return {}
        return {"teacher_momentum": cosine_schedule(step, total_steps, self.cfg.sit.momentum_teacher, 1.0)}

    # -- one step ------------------------------------------------------------------------------------------
    def reconstruct(self, images: Tensor) -> Tensor:
        """The student's reconstruction of (corrupted) images, (B, 3, H, W) in normalised pixel space."""
        tokens = self.backbone_of(self.student).tokens_by_role(images)
        reconstruction: Tensor = self.student["rec"](tokens.patches, tokens.grid)
        return reconstruction

    def training_step(self, batch: SiTBatch, state: StepState) -> StepOutput:  # type: ignore[override]
        targets = torch.cat(batch.targets)
        out = self.run("student", torch.cat(batch.views))
        z1, z2 = out.contrastive.chunk(NUM_VIEWS)
        metrics: dict[str, Tensor | float] = {}
        losses: dict[str, Tensor] = {}
        if self.masked:
            assert self.teacher is not None
            with torch.no_grad():
                t1, t2 = self.teacher(targets).contrastive.chunk(NUM_VIEWS)
            s = self.cfg.sit
            losses["con"] = symmetric_info_nce(z1, z2, t1, t2, s.masked_temperature, s.info_nce_scale, s.negatives)
            losses["rec"] = reconstruction_l1(out.reconstruction, targets, torch.cat(batch.masks))
        else:
            if self.use_rotation:
                labels = torch.cat(batch.rotations)
                losses["rot"] = rotation_loss(out.rotation, labels)
                metrics["rot_acc"] = (out.rotation.detach().argmax(-1) == labels).float().mean() * 100
            losses["con"] = nt_xent(z1, z2, self.cfg.sit.temperature, self.cfg.sit.negatives)
            losses["rec"] = reconstruction_l1(out.reconstruction, targets)
        loss = self.run("weighting", losses) if "weighting" in self.trained_modules() else self.weighting(losses)
        if state.log:  # the spread of the k-NN token (methods/diagnostics.feature_spread)
            metrics["feature_std"] = feature_spread(out.token)
        for name, value in losses.items():
            metrics[f"loss_{name}"] = value.detach()
        for name, value in self.weighting.weights().items():
            metrics[f"weight_{name}"] = value
        # KoLeo on the student's contrastive token of each view (DINOv2's regulariser, losses/koleo.py; a vitssl
        # addition to SiT, sit.koleo_weight 0 by default)
        koleo = koleo_term(out.token.chunk(NUM_VIEWS), self.cfg.sit.koleo_weight)
        return StepOutput.assemble(loss, [koleo], metrics, state.log)

    def after_optimizer_step(self, state: StepState) -> None:
        if self.ema is not None:
            self.ema.update(state.values["teacher_momentum"], state.applied)

    def backbones(self) -> list[nn.Module]:
        nets = [self.student] if self.teacher is None else [self.student, self.teacher]
        return [net["backbone"] for net in nets]

    def trained_modules(self) -> dict[str, nn.Module]:
        modules: dict[str, nn.Module] = {"student": self.student}
        if any(True for _ in self.weighting.parameters()):  # the learned uncertainties train too
            modules["weighting"] = self.weighting
        return modules

    def param_groups(self) -> list[dict[str, Any]]:
        """DINO's groups (no weight decay for biases and 1-D tensors), which the masked variant's authors use
        (``sit.decay_tokens`` true); with it false, as in the 2021 code's ``no_weight_decay``, SiT's two tokens
        and the position embedding (unless ``sit.decay_pos_embed``) get no weight decay either. The learned
        uncertainties are 0-d and never get any (docs/methods.md 3.2, 3.3)."""
        excluded = self._undecayed_names()
        named = list(self.student.named_parameters()) + list(self.weighting.named_parameters(prefix="weighting"))
        extra = [p for n, p in named if n.endswith(excluded) and p.requires_grad]
        groups = param_groups((n, p) for n, p in named if not n.endswith(excluded))
        groups[1]["params"].extend(extra)
        return groups

    def _undecayed_names(self) -> tuple[str, ...]:
        """The name endings kept out of weight decay on top of DINO's grouping (docs/methods.md 3.2)."""
        s = self.cfg.sit.resolved()
        if s.decay_tokens:
            return ()
        return _TOKEN_NAMES if s.decay_pos_embed else (*_TOKEN_NAMES, _POS_EMBED)

    def eval_backbone(self) -> SiTBackbone:
        """The student's backbone (the teacher's in the masked variant); ``pooled`` is ``sit.knn_feature``."""
        return self.backbone_of(self.teacher if self.teacher is not None else self.student)

    # -- pictures ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def pictures(self, batch: SiTBatch) -> dict[str, np.ndarray]:  # type: ignore[override]
        """The reconstruction grid of the batch's first view: clean / corrupted / reconstructed / mask rows."""
        from vitssl.methods.sit.pictures import reconstruction_grid

        n = min(self.cfg.sit.picture_images, batch.views[0].shape[0])
        was_training = self.training
        self.eval()
        try:
            corrupted = batch.views[0][:n]
            recon = self.reconstruct(corrupted)
        finally:
            self.train(was_training)
        grid = reconstruction_grid(
            batch.targets[0][:n], corrupted, recon, batch.masks[0][:n], self.cfg.data.mean, self.cfg.data.std
        )
        return {"reconstruction": np.asarray(grid)}


@torch.no_grad()
def rotation_accuracy(method: SiT, images: Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy (%) of the rotation head on ``images`` (normalised, upright), each shown in all the
    method's rotations: 100 / len(rotations) is chance. The network is put in eval mode for the measurement."""
    if not method.use_rotation:
        raise VitsslError("this SiT run has no rotation task (sit.rotations=[0] or the masked variant)")
    was_training = method.training
    method.eval()
    correct, total = 0, 0
    try:
        for chunk in torch.split(images, batch_size):
            for k in method.rotations:  # the label of a rotation by k quarter turns is k
                tokens = method.backbone_of(method.student).tokens_by_role(torch.rot90(chunk, k, dims=(-2, -1)))
                predicted = method.student["rot"](tokens.rotation).argmax(-1)
                correct += int((predicted == k).sum())
                total += chunk.shape[0]
    finally:
        method.train(was_training)
    return 100.0 * correct / total


@register_method(
    "sit",
    sections={"sit": SiTConfig},
    # the contrastive token sits after the [CLS] (rotation) token, where timm keeps its register tokens
    info=MethodInfo("SiT (Atito et al. 2021, arXiv 2104.03602)", timm_args={"reg_tokens": 1}),
)
def _build_sit(cfg: PretrainConfig) -> SiT:
    return SiT(cfg)
