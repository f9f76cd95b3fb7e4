"""The workloads the benchmarks measure: the fixed DINO workload of issue 15 and each method's CIFAR-10 preset.

The fixed workload is defined once, here, and turned into vitssl config overrides and into the peer's arguments,
so both sides run the same model on the same crops by construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

PRESETS: dict[str, str] = {
    "dino_vit_tiny": "configs/dino/vit_tiny_cifar10.yaml",
    "esvit_vit_tiny": "configs/esvit/vit_tiny_cifar10.yaml",
    "esvit_swin_mini": "configs/esvit/swin_mini_cifar10.yaml",
    "sit_vit_tiny": "configs/sit/vit_tiny_cifar10.yaml",
    "sit_masked_vit_tiny": "configs/sit/vit_tiny_cifar10_masked.yaml",
}
FIXED = "fixed"
WORKLOADS = (FIXED, *PRESETS)

# Toy sizes for smoke tests (the code paths of the real runs, at a size that takes seconds).
TOY_PRESET_OVERRIDES = [
    "data.batch_size=4",
    "crops.global_size=16",
    "crops.local_size=8",
    "crops.local_count=2",
    "dino.out_dim=32",
    "dino.hidden_dim=32",
    "dino.bottleneck_dim=16",
    "sit.proj_dim=16",
    "sit.proj_hidden_dim=32",
    "sit.blur_kernel=[3, 5]",
]
TOY_VIT_OVERRIDES = ["model.depth=1"]


@dataclass(frozen=True)
class FixedWorkload:
    """DINO on ViT-Tiny at CIFAR size: issue 15's fixed workload (fp32, AdamW, per-tensor clipping at 3).

    The head is DINO's ViT head (no BatchNorm, last-layer norm frozen at 1, the paper's defaults and lightly's);
    the learning rate is per 256 images (scaled to the batch by both sides); drop-path is off.
    """

    timm_name: str = "vit_tiny_patch16_224"
    patch_size: int = 4
    depth: int = 12
    global_size: int = 32
    local_size: int = 16
    global_count: int = 2
    local_count: int = 6
    out_dim: int = 4096
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 0.04
    clip_grad: float = 3.0
    momentum_teacher: float = 0.99
    teacher_temp: float = 0.04
    student_temp: float = 0.1
    center_momentum: float = 0.9
    base_config: str = PRESETS["dino_vit_tiny"]

    @property
    def images_per_step(self) -> int:
        return self.batch_size

    @property
    def peak_lr(self) -> float:
        """The learning rate at this batch (linear scaling rule, as vitssl's trainer applies it)."""
        return self.lr * self.batch_size / 256

    def describe(self) -> str:
        return (
            f"DINO ViT-Tiny ({self.timm_name}), patch {self.patch_size}, depth {self.depth}, "
            f"{self.global_count} x {self.global_size} px + {self.local_count} x {self.local_size} px crops, "
            f"head {self.out_dim}/{self.hidden_dim}/{self.bottleneck_dim}, batch {self.batch_size}, fp32"
        )

    def vitssl_overrides(self) -> list[str]:
        """Overrides of :attr:`base_config` that make vitssl's DINO this workload."""
        return [
            f"model.backbone={self.timm_name}",
            f"model.patch_size={self.patch_size}",
            f"model.depth={self.depth}",
            "model.drop_path=0.0",
            f"crops.global_size={self.global_size}",
            f"crops.local_size={self.local_size}",
            f"crops.local_count={self.local_count}",
            f"dino.out_dim={self.out_dim}",
            f"dino.hidden_dim={self.hidden_dim}",
            f"dino.bottleneck_dim={self.bottleneck_dim}",
            "dino.use_bn_in_head=false",
            "dino.norm_last_layer=true",
            "dino.freeze_last_layer=0",
            f"dino.momentum_teacher={self.momentum_teacher}",
            f"dino.teacher_temp={self.teacher_temp}",
            f"dino.warmup_teacher_temp={self.teacher_temp}",
            f"dino.student_temp={self.student_temp}",
            f"dino.center_momentum={self.center_momentum}",
            f"data.batch_size={self.batch_size}",
            f"optim.lr={self.lr}",
            f"optim.weight_decay={self.weight_decay}",
            f"optim.clip_grad={self.clip_grad}",
            "optim.accumulate=1",
            "train.precision=fp32",
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> FixedWorkload:
        return FixedWorkload(**data)


FIXED_WORKLOAD = FixedWorkload()
TOY_FIXED_WORKLOAD = replace(
    FIXED_WORKLOAD,
    depth=1,
    global_size=16,
    local_size=8,
    local_count=2,
    out_dim=32,
    hidden_dim=32,
    bottleneck_dim=16,
    batch_size=4,
)


def fixed_workload(toy: bool) -> FixedWorkload:
    return TOY_FIXED_WORKLOAD if toy else FIXED_WORKLOAD


def preset_overrides(name: str, toy: bool) -> list[str]:
    """Overrides of the preset ``name`` for a benchmark run (toy sizes when ``toy``)."""
    if not toy:
        return []
    vit = "swin" not in name
    return [*TOY_PRESET_OVERRIDES, *(TOY_VIT_OVERRIDES if vit else [])]
