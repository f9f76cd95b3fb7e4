"""Full fine-tuning of a pretrained backbone for image classification.

The recipe of DeiT / BEiT style fine-tuning used to evaluate self-supervised ViTs (DINO, Caron et al. 2021,
arXiv 2104.14294, section 5.2; SiT, Atito et al. 2021, arXiv 2104.03602, section 4): AdamW, linear warm-up then
cosine decay per iteration, layer-wise learning-rate decay (block i of L gets lr x decay^(L + 1 - i), the head
the full lr), label smoothing, and timm's RandAugment / mixup / cutmix, each switchable. For SiT checkpoints the
rotation and contrastive tokens can each feed a linear classifier whose logits are averaged (SiT, section 3.5).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from tqdm.auto import tqdm

from vitssl.config import PretrainConfig
from vitssl.data.bad_inputs import tallied
from vitssl.data.loading.loader import build_loader, set_loader_epoch
from vitssl.data.sources.folders import ImageFolderDataset
from vitssl.errors import VitsslError
from vitssl.eval.blocks import blocks_of, is_swin
from vitssl.eval.features import images_of, labels_of
from vitssl.eval.linear import accuracy
from vitssl.models.backbones import Backbone
from vitssl.schedules import cosine_schedule


@dataclass
class FinetuneSettings:
    """Options of :func:`finetune` (the CLI's help texts explain each)."""

    epochs: int = 10
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    label_smoothing: float = 0.1
    randaugment: str | None = "rand-m9-mstd0.5-mmax9-inc1"
    mixup: float = 0.8
    cutmix: float = 1.0
    sit_heads: bool = False
    batch_size: int = 64
    num_workers: int = 2
    device: str = "cpu"
    seed: int = 0


class Classifier(nn.Module):
    """A backbone with a linear head on its pooled feature, or SiT's two token heads with averaged logits."""

    def __init__(self, backbone: Backbone, num_classes: int, sit_heads: bool = False) -> None:
        super().__init__()
        if sit_heads and not hasattr(backbone, "tokens_by_role"):
            raise VitsslError("--sit-heads needs a SiT checkpoint (rotation and contrastive tokens); drop the flag")
        self.backbone = backbone
        self.sit_heads = sit_heads
        heads = [nn.Linear(backbone.embed_dim, num_classes) for _ in range(2 if sit_heads else 1)]
        for head in heads:
            nn.init.trunc_normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)
        self.heads = nn.ModuleList(heads)

    def forward(self, images: Tensor) -> Tensor:
        if self.sit_heads:
            tokens = self.backbone.tokens_by_role(images)  # type: ignore[operator]
            return (self.heads[0](tokens.rotation) + self.heads[1](tokens.contrastive)) / 2
        return self.heads[0](self.backbone.pooled(images))


def layer_id(name: str, backbone: Backbone, num_layers: int) -> int:
    """Depth of a parameter for layer-wise decay: embeddings 0, block i -> i + 1, final norm and head L + 1."""
    parts = name.split(".")
    if parts[0] == "heads":
        return num_layers + 1
    rest = parts[2:]  # drop "backbone.model"
    if not rest:
        return num_layers + 1
    if is_swin(backbone):
        model: Any = backbone.model
        depths = [len(layer.blocks) for layer in model.layers]
        if rest[0] == "layers":
            stage = int(rest[1])
            offset = sum(depths[:stage])
            if rest[2] == "blocks":
                return offset + int(rest[3]) + 1
            return offset + 1  # patch merging belongs to the stage's first block
        return 0 if rest[0] in ("patch_embed", "absolute_pos_embed") else num_layers + 1
    if rest[0] == "blocks":
        return int(rest[1]) + 1
    if rest[0] in ("cls_token", "reg_token", "pos_embed", "patch_embed", "pos_drop", "norm_pre"):
        return 0
    return num_layers + 1


def param_groups(model: Classifier, s: FinetuneSettings) -> list[dict]:
    """AdamW groups: lr scale decay^(L + 1 - depth); no weight decay on biases, norms, tokens and position tables."""
    num_layers = len(blocks_of(model.backbone))
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        depth = layer_id(name, model.backbone, num_layers)
        no_decay = p.ndim == 1 or name.endswith(".bias") or "token" in name or "pos_embed" in name
        no_decay = no_decay or "relative_position_bias_table" in name
        key = (depth, no_decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "weight_decay": 0.0 if no_decay else s.weight_decay,
                "lr_scale": s.layer_decay ** (num_layers + 1 - depth),
            }
        groups[key]["params"].append(p)
    return list(groups.values())


class SeededTransform:
    """Runs a torchvision/timm transform with Python, NumPy and torch RNGs seeded from the sample's generator.

    vitssl draws every random choice from (seed, epoch, index); timm's RandAugment uses the global RNGs, so we
    seed them per sample (and restore them afterwards) to keep views independent of the loader's workers.
    """

    def __init__(self, transform: object) -> None:
        self.transform = transform

    def __call__(self, image: Image.Image, generator: torch.Generator) -> Tensor:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            random.seed(seed)
            np.random.seed(seed)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self.transform(image)  # type: ignore[operator]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def train_transform(cfg: PretrainConfig, size: int, s: FinetuneSettings) -> SeededTransform:
    """timm's training transform: RandomResizedCrop + flip (+ RandAugment), normalised like pretraining."""
    from timm.data import create_transform

    tf = create_transform(
        input_size=size,
        is_training=True,
        auto_augment=s.randaugment or None,
        color_jitter=0.0 if s.randaugment else 0.4,
        interpolation="bicubic",
        mean=tuple(cfg.data.mean),
        std=tuple(cfg.data.std),
    )
    return SeededTransform(tf)


def _mixup(s: FinetuneSettings, num_classes: int):  # noqa: ANN202 - timm's Mixup is untyped
    if s.mixup <= 0 and s.cutmix <= 0:
        return None
    from timm.data import Mixup

    if s.batch_size % 2:
        raise VitsslError("mixup/cutmix need an even --batch-size; change it or pass --mixup 0 --cutmix 0")
    return Mixup(mixup_alpha=s.mixup, cutmix_alpha=s.cutmix, label_smoothing=s.label_smoothing, num_classes=num_classes)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: ImageFolderDataset, s: FinetuneSettings) -> tuple[float, float]:
    """Top-1 / top-5 accuracy (%) of a classifier on a labelled dataset with its evaluation transform."""
    model.eval()
    loader = build_loader(dataset, s.batch_size, s.num_workers, seed=s.seed, shuffle=False, drop_last=False)
    logits, labels = [], []
    for batch in tallied(loader):
        logits.append(model(images_of(batch).to(s.device)).float().cpu())
        labels.append(labels_of(batch))
    return accuracy(torch.cat(logits), torch.cat(labels))


def finetune_lr(step: int, total: int, peak: float, warmup: int, final: float) -> float:
    """The shared cosine schedule, except that warm-up step i trains at peak x (i + 1) / warmup.

    Counting the current step as done keeps the first step from being wasted at lr 0 (as BEiT / MAE's
    per-iteration schedule does); from the end of the warm-up on it is exactly :func:`cosine_schedule`.
    """
    return cosine_schedule(step + 1 if step < warmup else step, total, peak, final, warmup)


def finetune(
    model: Classifier, train: ImageFolderDataset, val: ImageFolderDataset, s: FinetuneSettings
) -> list[dict[str, float]]:
    """Fine-tune every parameter; returns one ``{"epoch", "train_loss", "top1", "top5", "lr"}`` per epoch."""
    if s.epochs < 1 or s.batch_size < 2 or s.lr <= 0 or not 0 < s.layer_decay <= 1:
        raise VitsslError("need --epochs >= 1, --batch-size >= 2, --lr > 0 and 0 < --layer-decay <= 1")
    torch.manual_seed(s.seed)
    np.random.seed(s.seed)  # timm's Mixup draws from NumPy's global RNG
    num_classes = len(train.classes)
    mixup = _mixup(s, num_classes)
    model = model.to(s.device)
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(param_groups(model, s), lr=s.lr)
    drop_last = len(train) >= s.batch_size
    loader = build_loader(train, s.batch_size, s.num_workers, seed=s.seed, shuffle=True, drop_last=drop_last)
    peak = s.lr * s.batch_size / 256
    total, warmup = s.epochs * len(loader), int(s.warmup_epochs * len(loader))
    step, history = 0, []
    for epoch in range(s.epochs):
        set_loader_epoch(loader, epoch)
        model.train()
        losses = []
        bar = tqdm(loader, desc=f"fine-tune epoch {epoch + 1}/{s.epochs}", unit="batch")
        for batch in tallied(bar):
            images, labels = images_of(batch).to(s.device), labels_of(batch).to(s.device)
            lr = finetune_lr(step, total, peak, warmup, s.min_lr)
            for group in opt.param_groups:
                group["lr"] = lr * group["lr_scale"]
            if mixup is not None and len(images) % 2 == 0:
                images, targets = mixup(images, labels)
                loss = torch.sum(-targets * F.log_softmax(model(images).float(), dim=-1), dim=-1).mean()
            else:
                loss = F.cross_entropy(model(images).float(), labels, label_smoothing=s.label_smoothing)
            if not torch.isfinite(loss):
                raise VitsslError(f"fine-tuning diverged (loss {loss.item()}) at step {step}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
            step += 1
        top1, top5 = evaluate(model, val, s)
        record = {"epoch": epoch + 1, "train_loss": round(sum(losses) / len(losses), 5), "top1": round(top1, 2)}
        history.append({**record, "top5": round(top5, 2), "lr": lr})
        print(f"epoch {epoch + 1}: train loss {record['train_loss']:.4f}  top-1 {top1:.2f}%  top-5 {top5:.2f}%")
    return history


def save_finetune(
    model: Classifier, history: list[dict[str, float]], classes: list[str], run_dir: Path, extra: dict
) -> tuple[Path, Path]:
    """Write ``finetune.json`` (final, best and every epoch) and ``finetuned.pt`` (``_init`` variants when
    ``extra["at_init"]``). The backbone is saved under timm's parameter names ("model." stripped), so timm can
    load it directly."""
    suffix = "_init" if extra.get("at_init") else ""
    json_path, model_path = run_dir / f"finetune{suffix}.json", run_dir / f"finetuned{suffix}.pt"
    final, best = history[-1], max(history, key=lambda r: r["top1"])
    payload = {**extra, "classes": classes, "final": final, "best": best, "history": history}
    json_path.write_text(json.dumps(payload, indent=2))
    state = {k.removeprefix("model."): v.cpu() for k, v in model.backbone.state_dict().items()}
    torch.save({"backbone": state, "heads": model.heads.state_dict(), "classes": classes}, model_path)
    return json_path, model_path
