"""A masked-image method is one module too: this file is a toy iBOT (Zhou et al. 2022, arXiv 2111.07832,
section 3.2: self-distillation on the [CLS] across views plus on masked patch tokens within a view). It builds on
DistillationMethod (EMA teacher, centres, schedules, last-layer freeze) and Backbone token masks, registers itself
and trains through the normal config loading, trainer and run folder; nothing outside this file knows it."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conftest import TINY_OVERRIDES
from vitssl.api import build_trainer
from vitssl.config import PretrainConfig, field_with_help, load_config, require
from vitssl.data.batches import ViewBatch
from vitssl.data.views.multicrop import CropSpec
from vitssl.losses.centering import Center
from vitssl.losses.dino import dino_cross_entropy
from vitssl.methods import StepOutput, register_method
from vitssl.methods.dino_family import build_dino_head
from vitssl.methods.distillation import DistillationMethod
from vitssl.models import build_backbone
from vitssl.schedules import StepState


@dataclass
class ToyIBOTConfig:
    mask_ratio: float = field_with_help(0.5, "Fraction of the student's patch tokens replaced by the mask token.")

    def validate(self, cfg: PretrainConfig) -> None:
        require(0 < self.mask_ratio < 1, "toy_ibot.mask_ratio must be in (0, 1)")


class MaskedNetwork(nn.ModuleDict):
    """Backbone + one DINO head shared by the [CLS] and the patch tokens (iBOT's shared head)."""

    def forward(self, images: Tensor, masks: Tensor | None = None) -> tuple[Tensor, Tensor]:
        feats = self["backbone"](images, masks)
        b, n, d = feats.tokens.shape
        return self["head"](feats.pooled), self["head"](feats.tokens.reshape(b * n, d)).reshape(b, n, -1)


class ToyIBOT(DistillationMethod):
    name = "toy_ibot"

    def __init__(self, cfg: PretrainConfig) -> None:
        m = cfg.model

        def network(drop_path: float, mask_token: bool) -> MaskedNetwork:
            backbone = build_backbone(
                m.backbone, m.patch_size, cfg.crops.global_size, m.depth, drop_path, mask_token=mask_token
            )
            return MaskedNetwork({"backbone": backbone, "head": build_dino_head(cfg, backbone.embed_dim)})

        # only the student sees masks: the teacher (a subset of the student's parameters) has no mask token
        super().__init__(cfg, network(m.drop_path, True), network(0.0, False))
        self.cls_centering = Center(self, "center", cfg.dino.out_dim)
        self.patch_centering = Center(self, "center_patch", cfg.dino.out_dim)

    @property
    def views(self) -> list[CropSpec]:
        return [CropSpec(size=self.cfg.crops.global_size, scale=(0.4, 1.0))] * 2

    def training_step(self, batch: ViewBatch, state: StepState) -> StepOutput:
        images = torch.cat(batch.views)
        rows = images.shape[-1] // self.cfg.model.patch_size
        masks = torch.rand(images.shape[0], rows, rows, device=images.device) < self.cfg.toy_ibot.mask_ratio
        temp = state.values["teacher_temp"]
        with torch.no_grad():
            t_cls, t_patch = self.teacher(images)
        s_cls, s_patch = self.run("student", images, masks)
        p_cls = self.cls_centering.probs([t_cls], temp)[0].chunk(2)
        logp_cls = F.log_softmax(s_cls / self.cfg.dino.student_temp, dim=-1).chunk(2)
        cls_loss = (dino_cross_entropy(logp_cls[1], p_cls[0]) + dino_cross_entropy(logp_cls[0], p_cls[1])) / 2
        masked = masks.flatten(1)  # the token order of the patch logits
        p_patch = self.patch_centering.probs([t_patch[masked]], temp)[0]
        patch_loss = dino_cross_entropy(F.log_softmax(s_patch[masked] / self.cfg.dino.student_temp, dim=-1), p_patch)
        self.pend_centre(self.cls_centering, [t_cls])
        self.pend_centre(self.patch_centering, [t_patch])
        return StepOutput(cls_loss + patch_loss, {"loss_cls": cls_loss.detach(), "loss_patch": patch_loss.detach()})


@register_method("toy_ibot", sections={"toy_ibot": ToyIBOTConfig}, reads=("dino",))
def build_toy_ibot(cfg: PretrainConfig) -> ToyIBOT:
    return ToyIBOT(cfg)


def test_a_masked_image_method_registered_from_outside_trains_through_the_normal_trainer(tiny_image_folder, tmp_path):
    cfg = load_config(
        None,
        [
            "method=toy_ibot",
            f"data.train={tiny_image_folder}",
            *TINY_OVERRIDES,
            "dino.freeze_last_layer=0",
            "optim.epochs=0.34",  # 24 images, batch 4: 2 steps
            "train.log_every=1",
            f"train.out_dir={tmp_path / 'ibot'}",
        ],
    )
    method = build_trainer(cfg).method
    assert "student.backbone.mask_token" in method.state_dict()
    assert "teacher.backbone.mask_token" not in method.state_dict()
    result = build_trainer(cfg).fit()
    assert result.steps == 2
    records = [json.loads(line) for line in (tmp_path / "ibot" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "loss" in r]
    assert [r["step"] for r in logged] == [0, 1] and all(r["loss_patch"] > 0 for r in logged)
    saved = torch.load(tmp_path / "ibot" / "last.pt", weights_only=True)["method"]
    assert saved["student.backbone.mask_token"].abs().sum() > 0  # it learned from the masked tokens
    assert saved["center_patch"].abs().sum() > 0  # the base moved the centre the step handed over


def test_the_student_sees_masked_tokens_and_the_teacher_the_clean_ones():
    torch.manual_seed(0)
    method = build_toy_ibot(load_config(None, ["method=toy_ibot", *TINY_OVERRIDES]))
    with torch.no_grad():
        method.student["backbone"].mask_token.normal_()
    images = torch.randn(2, 3, 16, 16)
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[:, 0] = True  # the first row of patches
    clean_cls, clean_patch = method.student(images)
    masked_cls, masked_patch = method.student(images, masks)
    teacher_cls, _ = method.teacher(images)
    torch.testing.assert_close(teacher_cls, clean_cls)  # the teacher starts as the student, unmasked
    assert not torch.allclose(masked_cls, clean_cls)
    assert not torch.allclose(masked_patch[masks.flatten(1)], clean_patch[masks.flatten(1)])
