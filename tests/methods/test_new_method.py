"""Adding a method is one new module: a config dataclass, a Method subclass and a registered factory. This file
is that module for a toy method, and trains it through the normal config loading, trainer and run folder."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import TINY_OVERRIDES
from vitssl.api import build_trainer
from vitssl.config import PretrainConfig, field_with_help, load_config, require
from vitssl.data.batches import ViewBatch
from vitssl.data.views.multicrop import CropSpec
from vitssl.errors import VitsslError
from vitssl.methods import Method, StepOutput, register_method
from vitssl.methods.dino_family import build_model_backbone
from vitssl.optim import param_groups
from vitssl.schedules import StepState


@dataclass
class ToyConfig:
    proj_dim: int = field_with_help(8, "Width of the toy projection.")

    def validate(self, cfg: PretrainConfig) -> None:
        require(self.proj_dim >= 1, "toy.proj_dim must be >= 1")


class Toy(Method):
    """Two views of each image; pull their projections together (a cosine loss, no negatives)."""

    name = "toy"

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        backbone = build_model_backbone(cfg, 0.0)
        self.student = nn.ModuleDict({"backbone": backbone, "proj": nn.Linear(backbone.embed_dim, cfg.toy.proj_dim)})

    @property
    def views(self) -> list[CropSpec]:
        return [CropSpec(size=self.cfg.crops.global_size, scale=(0.5, 1.0))] * 2

    def training_step(self, batch: ViewBatch, state: StepState) -> StepOutput:
        z = [self.student["proj"](self.student["backbone"](v).pooled) for v in batch.views]
        loss = 1 - F.cosine_similarity(z[0], z[1]).mean()
        return StepOutput(loss=loss, metrics={"toy_norm": z[0].detach().norm(dim=-1).mean()})

    def pictures(self, batch: ViewBatch) -> dict[str, np.ndarray]:
        return {"toy": np.zeros((4, 4, 3), dtype=np.uint8)}

    def trained_modules(self) -> dict[str, nn.Module]:
        return {"student": self.student}

    def backbones(self) -> list[nn.Module]:
        return [self.student["backbone"]]

    def param_groups(self) -> list[dict]:
        return param_groups(self.student.named_parameters())

    def eval_backbone(self):
        return self.student["backbone"]


@register_method("toy", sections={"toy": ToyConfig})
def build_toy(cfg: PretrainConfig) -> Toy:
    return Toy(cfg)


def test_a_method_registered_from_outside_trains_through_the_normal_trainer(tiny_image_folder, tmp_path):
    cfg = load_config(
        None,
        [
            "method=toy",
            "toy.proj_dim=4",
            f"data.train={tiny_image_folder}",
            *TINY_OVERRIDES,
            "optim.epochs=0.34",  # 24 images, batch 4: 2 steps
            "train.log_every=1",
            f"train.out_dir={tmp_path / 'toy'}",
        ],
    )
    assert cfg.toy.proj_dim == 4
    before = {k: v.clone() for k, v in build_trainer(cfg).method.state_dict().items()}
    result = build_trainer(cfg).fit()
    assert result.steps == 2
    records = [json.loads(line) for line in (tmp_path / "toy" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [0, 1] and all(
        "toy_norm" in r for r in records if "loss" in r
    )
    assert (tmp_path / "toy" / "pictures" / "toy_step000002.png").exists()
    saved = torch.load(tmp_path / "toy" / "last.pt", weights_only=True)
    assert saved["config"]["toy"] == {"proj_dim": 4} and saved["config"]["method"] == "toy"
    assert any(not torch.equal(before[k], saved["method"][k]) for k in before)  # it trained


def test_the_new_section_is_validated_and_documented():
    with pytest.raises(VitsslError, match="toy.proj_dim must be >= 1"):
        load_config(None, ["method=toy", "toy.proj_dim=0"])
    with pytest.raises(VitsslError, match="did you mean toy.proj_dim"):
        load_config(None, ["method=toy", "toy.proj_dims=3"])
    from vitssl.config import describe

    assert ("toy.proj_dim", "8", "Width of the toy projection.") in describe()
