"""Linear probing of a frozen backbone: the linear-classification protocol of DINO and EsViT.

DINO (Caron et al. 2021, arXiv 2104.14294, appendix) trains one linear layer (weights N(0, 0.01), bias 0) on
the concatenated [CLS] tokens of the last n blocks of the frozen network with SGD (momentum 0.9, no weight decay,
lr 1e-3 x batch/256, cosine schedule), training views RandomResizedCrop + flip, and reports the final and the
best epoch. EsViT (Li et al. 2021, arXiv 2106.09785) uses the token means of the last 4 Swin blocks.

Two modes:

* standard: every training epoch draws fresh augmented views and re-encodes them (the papers' protocol);
* fast: the features of every image are extracted once with the deterministic evaluation transform (no
  augmentation) and the layer is trained on those tensors; orders of magnitude cheaper, usually a little lower.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from vitssl.config import PretrainConfig
from vitssl.data.bad_inputs import tallied
from vitssl.data.build import eval_transform
from vitssl.data.loading.loader import build_loader, set_loader_epoch
from vitssl.data.sources.folders import ImageFolderDataset
from vitssl.data.views.multicrop import CropSpec, MultiCropTransform
from vitssl.errors import VitsslError
from vitssl.eval.blocks import block_features, default_n_last_blocks
from vitssl.eval.features import batch_field, images_of, labels_of
from vitssl.eval.loading import labelled_sets
from vitssl.models.backbones import Backbone
from vitssl.schedules import cosine_schedule

FAST_MODE_LABEL = "FAST MODE: frozen features extracted once, no augmentation"
STANDARD_MODE_LABEL = "standard: RandomResizedCrop + flip re-encoded every epoch"


@dataclass
class LinearSettings:
    """Options of :func:`linear_probe` (the CLI's help texts explain each)."""

    train: str | None = None
    val: str | None = None
    n_last_blocks: int | None = None
    avgpool: bool | None = None
    epochs: int = 100
    lr: float = 1e-3
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 0.0
    fast: bool = False
    max_train: int | None = None
    max_val: int | None = None
    num_workers: int = 2
    device: str = "cpu"
    seed: int = 0
    sweep: tuple[float, ...] = ()


@dataclass
class LinearResult:
    """Per-epoch validation accuracy, the final and the best epoch, and the trained layer."""

    mode: str
    n_last_blocks: int
    avgpool: bool
    feature_dim: int
    classes: list[str]
    history: list[dict[str, float]] = field(default_factory=list)
    head: nn.Linear | None = None
    lr: float = 0.0
    sweep: dict[str, float] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's record (the number to quote)."""
        return self.history[-1]

    @property
    def best(self) -> dict[str, float]:
        """The epoch with the highest top-1 (earliest on ties); chosen on the validation set, so optimistic."""
        return max(self.history, key=lambda r: (r["top1"], -r["epoch"]))


def make_linear_head(dim: int, num_classes: int) -> nn.Linear:
    """DINO's linear classifier: weights N(0, 0.01), bias 0."""
    head = nn.Linear(dim, num_classes)
    nn.init.normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    return head


@torch.no_grad()
def accuracy(logits: Tensor, labels: Tensor) -> tuple[float, float]:
    """Top-1 and top-5 accuracy in percent (top-5 is top-C with fewer than 5 classes)."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top == labels[:, None]
    return 100.0 * hit[:, 0].float().mean().item(), 100.0 * hit.any(dim=1).float().mean().item()


def train_linear_on_features(
    train_x: Tensor,
    train_y: Tensor,
    val_x: Tensor,
    val_y: Tensor,
    num_classes: int,
    s: LinearSettings,
    progress: bool = True,
) -> tuple[nn.Linear, list[dict[str, float]]]:
    """Train a linear layer on fixed features with SGD + cosine and score it on the validation set each epoch.

    Returns:
        The trained layer and one ``{"epoch", "train_loss", "top1", "top5"}`` record per epoch.
    """
    device = torch.device(s.device)
    generator = torch.Generator().manual_seed(s.seed)
    torch.manual_seed(s.seed)
    head = make_linear_head(train_x.shape[1], num_classes).to(device)
    peak = s.lr * s.batch_size / 256
    opt = torch.optim.SGD(head.parameters(), lr=peak, momentum=s.momentum, weight_decay=s.weight_decay)
    steps_per_epoch = max(1, -(-len(train_x) // s.batch_size))
    total, step, history = s.epochs * steps_per_epoch, 0, []
    for epoch in tqdm(range(s.epochs), desc="linear probe", unit="epoch", disable=not progress):
        order = torch.randperm(len(train_x), generator=generator)
        losses = []
        for start in range(0, len(order), s.batch_size):
            idx = order[start : start + s.batch_size]
            for group in opt.param_groups:
                group["lr"] = cosine_schedule(step, total, peak, 0.0)
            loss = F.cross_entropy(head(train_x[idx].to(device)), train_y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
        history.append(_score(head, val_x, val_y, epoch + 1, sum(losses) / len(losses)))
    return head.cpu(), history


@torch.no_grad()
def _score(head: nn.Linear, x: Tensor, y: Tensor, epoch: int, train_loss: float) -> dict[str, float]:
    device = head.weight.device
    logits = torch.cat([head(x[i : i + 4096].to(device)).cpu() for i in range(0, len(x), 4096)])
    top1, top5 = accuracy(logits, y)
    return {"epoch": epoch, "train_loss": round(train_loss, 5), "top1": round(top1, 2), "top5": round(top5, 2)}


@torch.no_grad()
def encode_dataset(
    backbone: Backbone, dataset: ImageFolderDataset, n: int, avgpool: bool, s: LinearSettings, desc: str
) -> tuple[Tensor, Tensor]:
    """Linear-probe features (not normalised, as in DINO) and labels of a whole labelled dataset."""
    loader = build_loader(dataset, s.batch_size, s.num_workers, seed=s.seed, shuffle=False, drop_last=False)
    feats, labels = [], []
    for batch in tallied(tqdm(loader, desc=desc, unit="batch")):
        feats.append(block_features(backbone, images_of(batch).to(s.device), n, avgpool).float().cpu())
        labels.append(labels_of(batch))
    return torch.cat(feats), torch.cat(labels)


def _datasets(cfg: PretrainConfig, s: LinearSettings) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    train, val = labelled_sets(cfg, s.train, s.val, s.max_train, s.max_val, "probe on")
    if train.classes != val.classes:
        raise VitsslError(f"--train has classes {train.classes[:5]}... but --val {val.classes[:5]}...; use matching")
    return train, val


def linear_probe(cfg: PretrainConfig, backbone: Backbone, s: LinearSettings) -> LinearResult:
    """Run the linear-probe protocol (standard or fast) on a frozen backbone; see the module docstring."""
    if s.epochs < 1 or s.batch_size < 1 or s.lr <= 0:
        raise VitsslError("--epochs and --batch-size must be >= 1 and --lr > 0")
    default_n, default_avg = default_n_last_blocks(backbone)
    n = s.n_last_blocks or default_n
    avgpool = default_avg if s.avgpool is None else s.avgpool
    backbone = backbone.to(s.device).eval()
    train, val = _datasets(cfg, s)
    val_x, val_y = encode_dataset(backbone, val, n, avgpool, s, "features (val)")
    result = LinearResult(
        mode=FAST_MODE_LABEL if s.fast else STANDARD_MODE_LABEL,
        n_last_blocks=n,
        avgpool=avgpool,
        feature_dim=val_x.shape[1],
        classes=list(train.classes),
    )
    result.lr = s.lr
    if s.sweep and not s.fast:
        raise VitsslError("several --lr values (a sweep) need --fast: each value re-encodes every epoch otherwise")
    if s.fast:
        train_x, train_y = encode_dataset(backbone, train, n, avgpool, s, "features (train)")
        # A sweep reuses the features: one head per learning rate, the one with the best final top-1 is kept.
        for lr in s.sweep or (s.lr,):
            trial = replace(s, lr=lr)
            head, history = train_linear_on_features(train_x, train_y, val_x, val_y, len(train.classes), trial)
            result.sweep[str(lr)] = history[-1]["top1"]
            if result.head is None or history[-1]["top1"] > result.final["top1"]:
                result.head, result.history, result.lr = head, history, lr
        if len(result.sweep) < 2:
            result.sweep = {}
    else:
        result.head, result.history = _train_augmented(cfg, backbone, train, val_x, val_y, n, avgpool, s)
    return result


def _train_augmented(
    cfg: PretrainConfig,
    backbone: Backbone,
    train: ImageFolderDataset,
    val_x: Tensor,
    val_y: Tensor,
    n: int,
    avgpool: bool,
    s: LinearSettings,
) -> tuple[nn.Linear, list[dict[str, float]]]:
    """The standard protocol: fresh RandomResizedCrop + flip views each epoch, encoded by the frozen backbone."""
    size = eval_transform(cfg).size
    crop = CropSpec(size=size, scale=(0.08, 1.0), jitter_p=0.0, grayscale_p=0.0)
    train.transform = MultiCropTransform([crop], cfg.data.mean, cfg.data.std)
    loader = build_loader(train, s.batch_size, s.num_workers, seed=s.seed, shuffle=True, drop_last=False)
    torch.manual_seed(s.seed)
    head = make_linear_head(val_x.shape[1], len(train.classes)).to(s.device)
    peak = s.lr * s.batch_size / 256
    opt = torch.optim.SGD(head.parameters(), lr=peak, momentum=s.momentum, weight_decay=s.weight_decay)
    total, step, history = s.epochs * len(loader), 0, []
    for epoch in range(s.epochs):
        set_loader_epoch(loader, epoch)
        losses = []
        for batch in tallied(tqdm(loader, desc=f"linear probe epoch {epoch + 1}/{s.epochs}", unit="batch")):
            with torch.no_grad():
                x = block_features(backbone, batch_field(batch, "views")[0].to(s.device), n, avgpool)
            for group in opt.param_groups:
                group["lr"] = cosine_schedule(step, total, peak, 0.0)
            loss = F.cross_entropy(head(x), labels_of(batch).to(s.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
        history.append(_score(head, val_x, val_y, epoch + 1, sum(losses) / len(losses)))
    return head.cpu(), history


def save_linear(result: LinearResult, run_dir: Path, extra: dict) -> tuple[Path, Path]:
    """Write ``linear.json`` (mode, final, best, history) and ``linear_head.pt`` (loadable with weights_only)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    suffix = ("_fast" if result.mode == FAST_MODE_LABEL else "") + ("_init" if extra.get("at_init") else "")
    json_path, head_path = run_dir / f"linear{suffix}.json", run_dir / f"linear_head{suffix}.pt"
    meta = {k: v for k, v in asdict(result).items() if k not in ("head", "history")}
    payload = {**extra, **meta, "final": result.final, "best": result.best, "history": result.history}
    json_path.write_text(json.dumps(payload, indent=2))
    assert result.head is not None
    torch.save({"state_dict": result.head.state_dict(), **meta, **extra}, head_path)
    return json_path, head_path


def format_linear(result: LinearResult) -> str:
    """A short human-readable summary; the mode line says whether this was the fast mode."""
    f, b = result.final, result.best
    sweep = ""
    if result.sweep:
        trials = ", ".join(f"{lr}: {top1:.2f}%" for lr, top1 in result.sweep.items())
        sweep = f"  lr sweep (final top-1; the best is kept, chosen on the validation set): {trials}\n"
    return (
        f"linear probe [{result.mode}], lr {result.lr:g} per 256 images\n"
        f"{sweep}"
        f"  feature: pooled output of the last {result.n_last_blocks} block(s)"
        f"{' + patch mean' if result.avgpool else ''}, {result.feature_dim}-d, {len(result.classes)} classes\n"
        f"  final (epoch {f['epoch']}): top-1 {f['top1']:.2f}%  top-5 {f['top5']:.2f}%\n"
        f"  best  (epoch {b['epoch']}): top-1 {b['top1']:.2f}%  top-5 {b['top5']:.2f}%"
    )
