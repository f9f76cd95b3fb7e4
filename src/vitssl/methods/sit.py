"""SiT: self-supervised vision transformer (Atito et al. 2021, "SiT: Self-supervised vIsion Transformer",
arXiv 2104.03602).

Original formulation (METHODS.md sections 3.1-3.3, the default): two rotated, corrupted views per image go
through one ViT with a rotation token and a contrastive token; the network predicts each view's rotation,
pulls the two views' contrastive embeddings together (NT-Xent) and reconstructs the clean rotated view from the
patch tokens (L1 on all pixels). Learned task uncertainties weight the three losses.

Masked variant (section 3.4, ``sit.variant=masked``): no rotation; the student reconstructs only the corrupted
pixels and matches an EMA teacher that sees the clean views (symmetric InfoNCE); ``L = L_con + lambda L_rec``.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from torch import Tensor, nn

from vitssl.config import PretrainConfig
from vitssl.data.corruptions import (
    BlurPatch,
    ColourDistortion,
    Corruption,
    CorruptionPipeline,
    GrayscalePatch,
    RandomDrop,
    RandomReplace,
)
from vitssl.data.multicrop import CropSpec
from vitssl.data.sit_views import SiTCollate, SiTViewTransform
from vitssl.errors import VitsslError
from vitssl.losses.sit import (
    FixedWeighting,
    UncertaintyWeighting,
    nt_xent,
    reconstruction_l1,
    rotation_loss,
    symmetric_info_nce,
)
from vitssl.methods.base import Method, StepOutput, register_method
from vitssl.models.sit_heads import (
    ContrastiveHead,
    ReconstructionHead,
    RotationHead,
    SiTBackbone,
    build_sit_backbone,
)
from vitssl.optim import ema_update_, param_groups
from vitssl.schedules import StepState, cosine_schedule

NUM_VIEWS = 2
# a_t of the uncertainty weighting: 1 for the classification-type losses, 0.5 for the L1 (METHODS.md 3.3)
UNCERTAINTY_SCALES = {"rot": 1.0, "con": 1.0, "rec": 0.5}
_TOKEN_NAMES = ("cls_token", "reg_token")


def sit_crops(cfg: PretrainConfig) -> list[CropSpec]:
    """SiT's two views: random resized crop, flip, colour jitter (crops.* settings), no blur or solarize."""
    c = cfg.crops
    spec = CropSpec(
        size=c.global_size,
        scale=(c.global_scale[0], c.global_scale[1]),
        jitter_p=c.jitter_p,
        brightness=c.brightness,
        contrast=c.contrast,
        saturation=c.saturation,
        hue=c.hue,
        grayscale_p=c.grayscale_p,
        blur_p=0.0,
        solarize_p=0.0,
    )
    return [spec] * NUM_VIEWS


def _pair(values: list[float]) -> tuple[float, float]:
    return float(values[0]), float(values[1])


def corruption_pipeline(cfg: PretrainConfig) -> CorruptionPipeline:
    """The configured corruptions, in SiT's order (colour distortion of the whole view first, then grayscale
    patch, blur patch, random drop and random replace); those with probability 0 are left out."""
    s = cfg.sit
    mean, std = cfg.data.mean, cfg.data.std
    steps: list[Corruption] = [
        ColourDistortion(p=s.distort_p, strength=s.distort_strength),
        GrayscalePatch(p=s.grayscale_p, side=_pair(s.grayscale_side)),
        BlurPatch(
            p=s.blur_p,
            side=_pair(s.blur_side),
            kernel=(int(s.blur_kernel[0]), int(s.blur_kernel[1])),
            sigma=_pair(s.blur_sigma),
        ),
        RandomDrop(
            p=s.drop_p,
            side=_pair(s.drop_side),
            area=_pair(s.drop_area),
            fill=s.drop_fill,
            mean=(mean[0], mean[1], mean[2]),
            std=(std[0], std[1], std[2]),
        ),
        RandomReplace(p=s.replace_p, side=_pair(s.replace_side), area=_pair(s.replace_area)),
    ]
    return CorruptionPipeline([step for step in steps if step.p > 0], s.replace_excludes_drop)


def sit_rotations(cfg: PretrainConfig) -> list[int]:
    """The allowed rotations: the configured ones, or only 0 in the masked variant (it has no rotation task)."""
    return [0] if cfg.sit.variant == "masked" else list(cfg.sit.rotations)


def validate_sit(cfg: PretrainConfig) -> None:
    """Range checks of the ``sit`` section, with one-line errors naming the key (config loading calls it)."""
    s = cfg.sit
    for key in ("grayscale_side", "blur_side", "drop_side", "replace_side", "drop_area", "replace_area"):
        lo_hi = getattr(s, key)
        is_side = key.endswith("side")  # a side must be > 0; an area fraction may start at 0
        ok = len(lo_hi) == 2 and (lo_hi[0] > 0 if is_side else lo_hi[0] >= 0) and lo_hi[0] <= lo_hi[1] <= 1
        if not ok:
            raise VitsslError(
                f"sit.{key} must be two fractions {'0 <' if is_side else '0 <='} min <= max <= 1, got {lo_hi}"
            )
    for key in ("grayscale_p", "blur_p", "drop_p", "replace_p", "distort_p"):
        if not 0 <= getattr(s, key) <= 1:
            raise VitsslError(f"sit.{key} is a probability and must lie in [0, 1], got {getattr(s, key)}")
    k = s.blur_kernel
    if len(k) != 2 or not 1 <= k[0] <= k[1] or k[0] % 2 == 0 or k[1] % 2 == 0:
        raise VitsslError(f"sit.blur_kernel must be two odd sizes 1 <= min <= max, e.g. [3, 15]; got {k}")
    if len(s.blur_sigma) != 2 or not 0 < s.blur_sigma[0] <= s.blur_sigma[1]:
        raise VitsslError(f"sit.blur_sigma must be two numbers 0 < min <= max, got {s.blur_sigma}")
    if not s.rotations or any(r not in (0, 1, 2, 3) for r in s.rotations) or len(set(s.rotations)) != len(s.rotations):
        raise VitsslError(f"sit.rotations must be distinct values in 0..3 such as [0, 1, 2, 3], got {s.rotations}")
    if s.temperature <= 0 or s.masked_temperature <= 0:
        raise VitsslError("sit.temperature and sit.masked_temperature must be > 0")
    if not 0 <= s.momentum_teacher <= 1:
        raise VitsslError(f"sit.momentum_teacher must be in [0, 1], got {s.momentum_teacher}")
    if min(s.rot_weight, s.con_weight, s.rec_weight) < 0:
        raise VitsslError("sit.rot_weight, sit.con_weight and sit.rec_weight must be >= 0")
    if s.proj_dim < 1 or s.proj_hidden_dim < 0 or s.rec_hidden_dim < 0 or s.picture_images < 1:
        raise VitsslError("sit.proj_dim and sit.picture_images must be >= 1, the hidden widths >= 0")
    if s.variant == "masked" and max(s.drop_p, s.replace_p) == 0:
        raise VitsslError(
            "the masked SiT variant reconstructs corrupted pixels, but sit.drop_p and sit.replace_p are 0"
        )
    if cfg.data.batch_size < 2:
        raise VitsslError("SiT contrasts the images of a batch; set data.batch_size >= 2")


class SiT(Method):
    """SiT's network, losses and (masked variant) EMA teacher, per METHODS.md section 3."""

    name = "sit"

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        s = cfg.sit
        self.masked = s.variant == "masked"
        self.rotations = sit_rotations(cfg)
        self.use_rotation = len(self.rotations) > 1
        self.student = self._network(cfg.model.drop_path, heads=("rot", "con", "rec"))
        self.teacher: nn.ModuleDict | None = None
        if self.masked:
            # The teacher sees clean views and only feeds the contrastive loss: backbone + projection.
            self.teacher = self._network(0.0, heads=("con",))
            self.teacher.load_state_dict(
                {k: v for k, v in self.student.state_dict().items() if not k.startswith(("rot.", "rec."))}
            )
            self.teacher.requires_grad_(False)
            names = dict(self.student.named_parameters())
            self._ema_pairs = [(p, names[n]) for n, p in self.teacher.named_parameters()]
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

    def _network(self, drop_path: float, heads: tuple[str, ...]) -> nn.ModuleDict:
        cfg, s = self.cfg, self.cfg.sit
        m = cfg.model
        backbone = build_sit_backbone(
            m.backbone, m.patch_size, m.img_size or cfg.crops.global_size, m.depth, drop_path, s.knn_feature
        )
        net = nn.ModuleDict({"backbone": backbone})
        dim = backbone.embed_dim
        if "rot" in heads and self.use_rotation:
            net["rot"] = RotationHead(dim)
        if "con" in heads:
            net["con"] = ContrastiveHead(dim, s.proj_dim, s.proj_hidden_dim)
        if "rec" in heads:
            net["rec"] = ReconstructionHead(dim, backbone.patch_size, s.rec_hidden_dim)
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
            self.views, corruption_pipeline(self.cfg), self.cfg.data.mean, self.cfg.data.std, self.rotations
        )

    def train_collate(self) -> SiTCollate:
        return SiTCollate()

    def schedule(self, step: int, steps_per_epoch: int, total_steps: int) -> dict[str, float]:
        if not self.masked:
            return {}
        return {"teacher_momentum": cosine_schedule(step, total_steps, self.cfg.sit.momentum_teacher, 1.0)}

    # -- one step ------------------------------------------------------------------------------------------
    def reconstruct(self, images: Tensor) -> Tensor:
        """The student's reconstruction of (corrupted) images, (B, 3, H, W) in normalised pixel space."""
        tokens = self.backbone_of(self.student).tokens_by_role(images)
        return self.student["rec"](tokens.patches, tokens.grid)

    def training_step(self, batch: dict, state: StepState) -> StepOutput:
        views, targets = torch.cat(batch["views"]), torch.cat(batch["targets"])
        tokens = self.backbone_of(self.student).tokens_by_role(views)
        z1, z2 = self.student["con"](tokens.contrastive).chunk(NUM_VIEWS)
        recon = self.student["rec"](tokens.patches, tokens.grid)
        metrics: dict[str, Tensor | float] = {}
        losses: dict[str, Tensor] = {}
        if self.masked:
            assert self.teacher is not None
            with torch.no_grad():
                t_tokens = self.backbone_of(self.teacher).tokens_by_role(targets)
                t1, t2 = self.teacher["con"](t_tokens.contrastive).chunk(NUM_VIEWS)
            losses["con"] = symmetric_info_nce(z1, z2, t1, t2, self.cfg.sit.masked_temperature)
            losses["rec"] = reconstruction_l1(recon, targets, torch.cat(batch["masks"]))
        else:
            if self.use_rotation:
                logits = self.student["rot"](tokens.rotation)
                labels = torch.cat(batch["rotations"])
                losses["rot"] = rotation_loss(logits, labels)
                metrics["rot_acc"] = (logits.detach().argmax(-1) == labels).float().mean() * 100
            losses["con"] = nt_xent(z1, z2, self.cfg.sit.temperature)
            losses["rec"] = reconstruction_l1(recon, targets)
        loss = self.weighting(losses)
        for name, value in losses.items():
            metrics[f"loss_{name}"] = value.detach()
        for name, value in self.weighting.weights().items():
            metrics[f"weight_{name}"] = value
        return StepOutput(loss=loss, metrics=metrics)

    def after_optimizer_step(self, state: StepState) -> None:
        if self.masked:
            teacher, student = zip(*self._ema_pairs)
            ema_update_(teacher, student, state.values["teacher_momentum"])

    def param_groups(self) -> list[dict]:
        """DINO's groups (no weight decay for biases and 1-D tensors), plus SiT's two tokens and the learned
        uncertainties without weight decay (METHODS.md 3.2, 3.3)."""
        named = list(self.student.named_parameters()) + list(self.weighting.named_parameters(prefix="weighting"))
        tokens = [p for n, p in named if n.endswith(_TOKEN_NAMES) and p.requires_grad]
        groups = param_groups((n, p) for n, p in named if not n.endswith(_TOKEN_NAMES))
        groups[1]["params"].extend(tokens)
        return groups

    def eval_backbone(self) -> SiTBackbone:
        """The student's backbone (the teacher's in the masked variant); ``pooled`` is ``sit.knn_feature``."""
        return self.backbone_of(self.teacher if self.teacher is not None else self.student)

    # -- pictures ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def visualise(self, batch: dict, out_dir: Path, step: int) -> Path | None:
        from vitssl.methods.sit_pictures import save_reconstruction_grid

        n = min(self.cfg.sit.picture_images, batch["views"][0].shape[0])
        was_training = self.training
        self.eval()
        try:
            corrupted = batch["views"][0][:n]
            recon = self.reconstruct(corrupted)
        finally:
            self.train(was_training)
        path = Path(out_dir) / f"reconstruction_step{step:06d}.png"
        return save_reconstruction_grid(
            batch["targets"][0][:n],
            corrupted,
            recon,
            batch["masks"][0][:n],
            self.cfg.data.mean,
            self.cfg.data.std,
            path,
        )


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
        for chunk in images.split(batch_size):
            for k in method.rotations:  # the label of a rotation by k quarter turns is k
                tokens = method.backbone_of(method.student).tokens_by_role(torch.rot90(chunk, k, dims=(-2, -1)))
                predicted = method.student["rot"](tokens.rotation).argmax(-1)
                correct += int((predicted == k).sum())
                total += chunk.shape[0]
    finally:
        method.train(was_training)
    return 100.0 * correct / total


@register_method("sit")
def _build_sit(cfg: PretrainConfig) -> SiT:
    return SiT(cfg)
