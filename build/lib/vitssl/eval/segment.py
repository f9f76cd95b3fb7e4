"""A linear semantic-segmentation probe on frozen patch tokens, scored by mIoU.

The "linear" protocol of DINOv2 (Oquab et al. 2023, arXiv 2304.07193, section 7.4) applied to our backbones:
a linear layer maps every final-norm patch token (ViT) or last-stage region token (Swin; EsViT, Li et al. 2021,
arXiv 2106.09785) to class logits, the logit map is bilinearly upsampled to the image and trained with
per-pixel cross-entropy; the backbone stays frozen. Since the tokens are fixed, they are extracted once.
It turns the claim that self-supervised weights are a good starting point for dense tasks (DINO, Caron et al.
2021, arXiv 2104.14294, section 5) into a number, next to the same network at initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from vitssl.errors import VitsslError
from vitssl.eval.pairs import IGNORE, Pairs
from vitssl.models.backbones import Backbone
from vitssl.schedules import cosine_schedule


@dataclass
class SegmentSettings:
    """Training options of the probe (the CLI's help texts explain each)."""

    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    device: str = "cpu"
    seed: int = 0


@torch.no_grad()
def patch_tokens(backbone: Backbone, images: Tensor, batch_size: int = 64, device: str = "cpu") -> Tensor:
    """Frozen token maps (N, D, rows, cols) of a set of images, on the CPU."""
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc="patch tokens", unit="batch"):
        feats = backbone(images[i : i + batch_size].to(device))
        rows, cols = feats.grid
        out.append(feats.tokens.float().transpose(1, 2).reshape(len(feats.tokens), -1, rows, cols).cpu())
    return torch.cat(out)


class LinearSegmenter(nn.Module):
    """BatchNorm (no affine) + a 1x1 convolution over the token map, upsampled to the image size.

    The normalisation makes one learning rate work for every backbone (token scales differ a lot between a
    trained network and one at initialisation); it is linear at inference, so the probe stays linear.
    """

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(dim, affine=False)
        self.classifier = nn.Conv2d(dim, num_classes, kernel_size=1)
        nn.init.normal_(self.classifier.weight, std=0.01)
        if self.classifier.bias is not None:
            nn.init.zeros_(self.classifier.bias)

    def forward(self, tokens: Tensor, size: tuple[int, int]) -> Tensor:
        logits = self.classifier(self.norm(tokens))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def confusion(pred: Tensor, truth: Tensor, num_classes: int) -> Tensor:
    """(C, C) counts: rows true class, columns predicted; ignored pixels (255) are left out."""
    valid = truth != IGNORE
    index = truth[valid] * num_classes + pred[valid]
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def miou(conf: Tensor) -> tuple[float, list[float]]:
    """Mean intersection over union over the classes present (in truth or prediction), and each class's IoU."""
    tp = conf.diag().float()
    union = conf.sum(0).float() + conf.sum(1).float() - tp
    present = union > 0
    ious = torch.where(present, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    if not present.any():
        raise VitsslError("no labelled pixels to score; check the masks")
    return 100.0 * ious[present].mean().item(), [round(100.0 * v, 2) for v in ious.tolist()]


def train_segmenter(train_tokens: Tensor, train_masks: Tensor, num_classes: int, s: SegmentSettings) -> LinearSegmenter:
    """Fit the probe on fixed tokens with AdamW and a cosine schedule."""
    if s.epochs < 1 or s.batch_size < 1 or s.lr <= 0:
        raise VitsslError("--epochs and --batch-size must be >= 1 and --lr > 0")
    torch.manual_seed(s.seed)
    generator = torch.Generator().manual_seed(s.seed)
    model = LinearSegmenter(train_tokens.shape[1], num_classes).to(s.device)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    size = tuple(train_masks.shape[-2:])
    steps = -(-len(train_tokens) // s.batch_size)
    total, step = s.epochs * steps, 0
    for _ in tqdm(range(s.epochs), desc="segmentation probe", unit="epoch"):
        for idx in torch.randperm(len(train_tokens), generator=generator).split(s.batch_size):
            if len(idx) < 2:
                continue  # BatchNorm needs two samples
            for group in opt.param_groups:
                group["lr"] = cosine_schedule(step, total, s.lr, 0.0)
            logits = model(train_tokens[idx].to(s.device), size)
            loss = F.cross_entropy(logits, train_masks[idx].to(s.device), ignore_index=IGNORE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    return model.eval()


@torch.no_grad()
def score_segmenter(model: LinearSegmenter, tokens: Tensor, masks: Tensor, num_classes: int, device: str) -> dict:
    """mIoU (%), per-class IoU and pixel accuracy of the probe on a set of token maps and masks."""
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    size = tuple(masks.shape[-2:])
    for i in range(0, len(tokens), 64):
        pred = model(tokens[i : i + 64].to(device), size).argmax(1).cpu()
        conf += confusion(pred, masks[i : i + 64], num_classes)
    mean, per_class = miou(conf)
    pixel_acc = 100.0 * conf.diag().sum().item() / max(1, conf.sum().item())
    return {"miou": round(mean, 2), "per_class_iou": per_class, "pixel_accuracy": round(pixel_acc, 2)}


def segmentation_probe(
    backbone: Backbone, train: Pairs, val: Pairs, s: SegmentSettings
) -> tuple[dict, LinearSegmenter]:
    """Extract frozen tokens of both sets, train the linear probe on one and score it on the other."""
    num_classes = max(train.num_classes, val.num_classes)
    backbone = backbone.to(s.device).eval()
    train_tokens = patch_tokens(backbone, train.images, s.batch_size, s.device)
    val_tokens = patch_tokens(backbone, val.images, s.batch_size, s.device)
    model = train_segmenter(train_tokens, train.masks, num_classes, s)
    result = score_segmenter(model, val_tokens, val.masks, num_classes, s.device)
    result.update(train_images=len(train.images), val_images=len(val.images), num_classes=num_classes)
    return result, model.cpu()
