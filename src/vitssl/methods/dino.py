"""DINO: self-distillation with no labels (Caron et al. 2021, arXiv 2104.14294).

A student (backbone + head) sees all crops; a momentum teacher (an EMA of the student) sees the global crops.
The student matches the teacher's centred, sharpened distribution over K prototypes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitssl.config import PretrainConfig
from vitssl.data.multicrop import CropSpec, dino_crops
from vitssl.losses.dino import DINOLoss
from vitssl.methods.base import Method, StepOutput, register_method
from vitssl.methods.multicrop import forward_per_resolution
from vitssl.models.backbones import Backbone, build_backbone
from vitssl.models.heads import DINOHead
from vitssl.optim import ema_update_, param_groups
from vitssl.schedules import StepState, cosine_schedule, linear_warmup

NUM_GLOBAL_CROPS = 2


def build_dino_backbone(cfg: PretrainConfig, drop_path: float) -> Backbone:
    m = cfg.model
    return build_backbone(
        m.backbone,
        patch_size=m.patch_size,
        img_size=m.img_size or cfg.crops.global_size,
        depth=m.depth,
        drop_path_rate=drop_path,
        window_size=m.window_size,
    )


def build_dino_head(cfg: PretrainConfig, in_dim: int) -> DINOHead:
    d = cfg.dino
    return DINOHead(
        in_dim,
        d.out_dim,
        hidden_dim=d.hidden_dim,
        bottleneck_dim=d.bottleneck_dim,
        use_bn=d.use_bn_in_head,
        norm_last_layer=d.norm_last_layer,
    )


class DINO(Method):
    """Student, EMA teacher, DINO head and loss, with the schedules of METHODS.md section 1."""

    name = "dino"

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.student = nn.ModuleDict({"backbone": build_dino_backbone(cfg, cfg.model.drop_path)})
        self.student["head"] = build_dino_head(cfg, self.student["backbone"].embed_dim)
        # The teacher is built without drop-path, then starts as an exact copy of the student.
        self.teacher = nn.ModuleDict({"backbone": build_dino_backbone(cfg, 0.0)})
        self.teacher["head"] = build_dino_head(cfg, self.teacher["backbone"].embed_dim)
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)
        self.loss_fn = DINOLoss(cfg.dino.out_dim, cfg.dino.student_temp, cfg.dino.center_momentum)
        self._pending_teacher: list[Tensor] = []
        self._ema_pairs = [(pt, ps) for pt, ps in zip(self.teacher.parameters(), self.student.parameters())]

    # -- what the loader must produce -----------------------------------------------------------------------
    @property
    def views(self) -> list[CropSpec]:
        c = self.cfg.crops
        return dino_crops(
            global_size=c.global_size,
            global_scale=tuple(c.global_scale),
            local_count=c.local_count,
            local_size=c.local_size,
            local_scale=tuple(c.local_scale),
            jitter_p=c.jitter_p,
            grayscale_p=c.grayscale_p,
            blur_radius=tuple(c.blur_radius),
            brightness=c.brightness,
            contrast=c.contrast,
            saturation=c.saturation,
            hue=c.hue,
        )

    def schedule(self, step: int, steps_per_epoch: int, total_steps: int) -> dict[str, float]:
        d = self.cfg.dino
        warmup = round(d.warmup_teacher_temp_epochs * steps_per_epoch)
        return {
            "teacher_momentum": cosine_schedule(step, total_steps, d.momentum_teacher, 1.0),
            "teacher_temp": linear_warmup(step, warmup, d.warmup_teacher_temp, d.teacher_temp),
        }

    # -- one step ------------------------------------------------------------------------------------------
    def _head_logits(self, net: nn.ModuleDict, views: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        feats = forward_per_resolution(net["backbone"], views)
        pooled = [f.pooled for f in feats]
        logits = net["head"](torch.cat(pooled)).chunk(len(views))
        return list(logits), pooled

    def training_step(self, batch: dict, state: StepState) -> StepOutput:
        views: list[Tensor] = batch["views"]
        with torch.no_grad():
            teacher_out, _ = self._head_logits(self.teacher, views[:NUM_GLOBAL_CROPS])
        student_out, student_pooled = self._head_logits(self.student, views)
        loss = self.loss_fn(student_out, teacher_out, state.values["teacher_temp"])
        self._pending_teacher.extend(t.detach() for t in teacher_out)
        metrics: dict[str, Tensor | float] = {}
        if state.log:
            metrics = self._diagnostics(teacher_out, student_pooled, state.values["teacher_temp"])
        return StepOutput(loss=loss, metrics=metrics)

    @torch.no_grad()
    def _diagnostics(self, teacher_out: list[Tensor], student_pooled: list[Tensor], temp: float) -> dict:
        """Collapse diagnostics: teacher entropy (-> 0: one-hot collapse), KL of the batch-mean teacher
        distribution to uniform (-> ln K: everything on one prototype), centre norm, feature spread."""
        probs = torch.cat(self.loss_fn.teacher_probs(teacher_out, temp))
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
        mean_p = probs.mean(0)
        kl_uniform = (mean_p * (mean_p.clamp_min(1e-12).log() + math.log(mean_p.numel()))).sum()
        feats = F.normalize(student_pooled[0].float(), dim=-1)
        return {
            "teacher_entropy": entropy,
            "kl_to_uniform": kl_uniform,
            "center_norm": self.loss_fn.center.norm(),
            "feature_std": feats.std(dim=0).mean(),
        }

    def before_optimizer_step(self, state: StepState) -> None:
        if state.epoch_float < self.cfg.dino.freeze_last_layer:
            for p in self.student["head"].last_layer.parameters():
                p.grad = None  # no update of the prototypes while the rest of the network settles

    def after_optimizer_step(self, state: StepState) -> None:
        teacher, student = zip(*self._ema_pairs)
        ema_update_(teacher, student, state.values["teacher_momentum"])
        if self._pending_teacher:
            self.loss_fn.update_center(self._pending_teacher)
        self._pending_teacher = []

    def discard_pending(self) -> None:
        self._pending_teacher = []

    def param_groups(self) -> list[dict]:
        return param_groups(self.student.named_parameters())

    def eval_backbone(self) -> Backbone:
        return self.teacher["backbone"]


@register_method("dino")
def _build_dino(cfg: PretrainConfig) -> DINO:
    return DINO(cfg)
