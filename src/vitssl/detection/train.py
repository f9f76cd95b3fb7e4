"""Training a torchvision detector on a pretrained backbone and scoring it by COCO box AP.

The protocol follows ViTDet (Li et al. 2022, arXiv 2203.16527): the backbone is fine-tuned with AdamW and
layer-wise learning-rate decay (block i of L gets lr x decay^(L + 1 - i), the embeddings decay^(L + 1), the
pyramid and the heads the full lr), a linear warm-up and a cosine decay, horizontal flips as the only
augmentation; ``freeze`` keeps the backbone fixed instead and trains only the pyramid and the heads. The score is
COCO's box AP (AP averaged over IoU 0.50:0.95, AP50, AP75, by size) computed by torchmetrics'
``MeanAveragePrecision`` (pycocotools backend), not by hand.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vitssl.data.loading.workers import init_worker
from vitssl.detection.dataset import DetectionImages, DetectionSet, collate, take_bad_paths
from vitssl.detection.model import DetectionBackbone
from vitssl.errors import VitsslError
from vitssl.extras import require

# torchmetrics' result keys -> ours (percent)
_METRICS = {
    "map": "ap",
    "map_50": "ap50",
    "map_75": "ap75",
    "map_small": "ap_small",
    "map_medium": "ap_medium",
    "map_large": "ap_large",
    "mar_100": "ar100",
}


@dataclass
class DetectSettings:
    """Training options (the CLI's help texts explain each)."""

    detector: str = "faster_rcnn"
    freeze: bool = False
    epochs: int = 12
    lr: float = 2e-4
    layer_decay: float = 0.75
    weight_decay: float = 0.05
    batch_size: int = 8
    image_size: int = 64
    fpn_channels: int = 128
    num_workers: int = 0
    device: str = "cpu"
    seed: int = 0
    progress: bool = True


def _depths(named: list[tuple[str, nn.Parameter]], blocks: list[nn.Module]) -> list[int]:
    """Layer depth of each body parameter: block i -> i (1-based); parameters before the first block (patch
    embedding, position table, [CLS]) 0; others (Swin patch merging) the depth of the next block's; after the
    last block (final norm) L + 1."""
    depth_of = {id(p): i for i, block in enumerate(blocks, 1) for p in block.parameters()}
    depths = [depth_of.get(id(p), -1) for _, p in named]
    following = len(blocks) + 1
    for k in range(len(depths) - 1, -1, -1):  # backwards: give each non-block parameter the next block's depth
        if depths[k] >= 0:
            following = depths[k]
        else:
            depths[k] = following
    seen_block = False
    for k, (_, p) in enumerate(named):
        seen_block = seen_block or id(p) in depth_of
        if not seen_block:
            depths[k] = 0
    return depths


def param_groups(model: nn.Module, pyramid: DetectionBackbone, s: DetectSettings) -> list[dict]:
    """AdamW groups: layer-wise lr scales on the body, the full lr elsewhere; no weight decay on 1-D tensors,
    biases, tokens and position tables."""
    body_named = list(pyramid.body.named_parameters())
    blocks = pyramid.body.blocks()
    scale_of = {
        id(p): s.layer_decay ** (len(blocks) + 1 - d)
        for (_, p), d in zip(body_named, _depths(body_named, blocks), strict=True)
    }
    groups: dict[tuple[float, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith(".bias") or "token" in name or "pos_embed" in name
        no_decay = no_decay or "relative_position_bias_table" in name
        key = (scale_of.get(id(p), 1.0), no_decay)
        group = groups.setdefault(
            key, {"params": [], "lr_scale": key[0], "weight_decay": 0.0 if no_decay else s.weight_decay}
        )
        group["params"].append(p)
    return list(groups.values())


def _lr(step: int, total: int, base: float) -> float:
    """Linear warm-up over the first 10% of the steps (at most 200), then a cosine decay to zero."""
    warmup = min(200, max(1, total // 10))
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _to(targets: list[dict], device: str) -> list[dict]:
    return [{k: v.to(device) for k, v in t.items()} for t in targets]


def _check(s: DetectSettings) -> None:
    if s.epochs < 1 or s.batch_size < 1 or s.lr <= 0 or not 0 < s.layer_decay <= 1:
        raise VitsslError("--epochs and --batch-size must be >= 1, --lr > 0 and --layer-decay in (0, 1]")


def train_detector(model: nn.Module, pyramid: DetectionBackbone, train: DetectionSet, s: DetectSettings) -> dict:
    """Train ``model`` in place; returns the mean loss of the last epoch, step counts and the time taken.

    A step whose loss is not finite is skipped (and counted) rather than allowed to poison the weights.
    """
    _check(s)
    torch.manual_seed(s.seed)
    dataset = DetectionImages(train, flip=True, seed=s.seed)
    loader = DataLoader(
        dataset,
        batch_size=s.batch_size,
        shuffle=True,
        collate_fn=collate,
        num_workers=s.num_workers,
        generator=torch.Generator().manual_seed(s.seed),
        worker_init_fn=init_worker if s.num_workers > 0 else None,
    )
    groups = param_groups(model, pyramid, s)
    opt = torch.optim.AdamW(groups, lr=s.lr)
    params = [p for g in groups for p in g["params"]]
    total, step, skipped, start = s.epochs * len(loader), 0, 0, time.perf_counter()
    last: list[float] = []
    model.to(s.device).train()
    for epoch in range(s.epochs):
        dataset.set_epoch(epoch)
        last = []
        bar = tqdm(loader, desc=f"detector epoch {epoch + 1}/{s.epochs}", unit="batch", disable=not s.progress)
        for images, targets in bar:
            for group in opt.param_groups:
                group["lr"] = _lr(step, total, s.lr) * group["lr_scale"]
            step += 1
            losses = model([im.to(s.device) for im in images], _to(take_bad_paths(targets), s.device))
            loss: Tensor = sum(losses.values())
            if not torch.isfinite(loss):
                skipped += 1
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)  # occasional huge box-regression gradients early on
            opt.step()
            last.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
    if skipped:
        warnings.warn(f"{skipped} of {total} detector steps had a non-finite loss and were skipped", stacklevel=2)
    if skipped == total:
        raise VitsslError("every detector step had a non-finite loss; lower --lr")
    mean_loss = sum(last) / len(last) if last else float("nan")
    return {"final_loss": round(mean_loss, 4), "steps": total, "skipped_steps": skipped,
            "train_seconds": round(time.perf_counter() - start, 1)}  # fmt: skip


@torch.no_grad()
def predict(model: nn.Module, images: list[Tensor], device: str) -> list[dict]:
    """Detections (boxes xyxy in the images' own pixels, scores, labels) on the CPU."""
    model.eval()
    return [{k: v.cpu() for k, v in out.items()} for out in model([im.to(device) for im in images])]


def evaluate_detector(model: nn.Module, val: DetectionSet, s: DetectSettings) -> dict:
    """COCO box AP (percent) of ``model`` on ``val`` with torchmetrics' MeanAveragePrecision."""
    MeanAveragePrecision = require(
        "torchmetrics.detection", "detect", "COCO box AP (vitssl detect)"
    ).MeanAveragePrecision
    require("pycocotools", "detect", "COCO box AP (vitssl detect)")

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
    loader = DataLoader(
        DetectionImages(val),
        batch_size=s.batch_size,
        collate_fn=collate,
        num_workers=s.num_workers,
        worker_init_fn=init_worker if s.num_workers > 0 else None,
    )
    for images, targets in tqdm(loader, desc="detector evaluation", unit="batch", disable=not s.progress):
        metric.update(predict(model, images, s.device), take_bad_paths(targets))
    return summarize(metric.compute())


def summarize(result: dict) -> dict:
    """torchmetrics' result -> percentages with our names; torchmetrics' -1 (nothing to score) -> None."""
    out: dict[str, float | None] = {}
    for key, name in _METRICS.items():
        value = float(result[key])
        out[name] = None if value < 0 else round(100.0 * value, 2)
    return out
