"""``vitssl finetune``: full fine-tuning of a pretrained backbone for classification."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from vitssl.commands._shared import (
    add_checkpoint,
    add_deprecated,
    add_device,
    add_init_comparison,
    add_labelled_sets,
    add_strict,
    non_negative_float,
    open_unit_float,
    positive_float,
    positive_int,
    provenance,
    run_protocol,
    seed_int,
    unit_below_one_float,
    with_bad_inputs,
)

if TYPE_CHECKING:
    from vitssl.config import PretrainConfig
    from vitssl.eval.finetune import FinetuneSettings
    from vitssl.models.backbones import Backbone

EPILOG = """\
examples:
  vitssl finetune runs/cifar --train cifar10/train --val cifar10/test --epochs 100
  vitssl finetune runs/demo --epochs 5 --no-randaugment --mixup 0 --cutmix 0
  vitssl finetune runs/sit_cifar --sit-heads --epochs 50

Prints top-1 / top-5 after every epoch; writes RUN/finetune.json (every epoch) and RUN/finetuned.pt (the
backbone under timm's parameter names, "backbone" with the "model." prefix stripped, plus the head)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a pretrained backbone end to end for classification",
        description="Fine-tune every weight of a pretrained backbone with a linear head: AdamW, linear warm-up "
        "then cosine decay per iteration, layer-wise learning-rate decay, label smoothing, and timm's "
        "RandAugment / mixup / cutmix (each switchable). For SiT checkpoints, --sit-heads classifies from the "
        "rotation and contrastive tokens with averaged logits (Atito et al. 2021).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_checkpoint(p)
    add_labelled_sets(p)
    p.add_argument("--epochs", type=positive_int, default=10, help="training epochs (default 10; papers: 100-300)")
    p.add_argument(
        "--lr",
        type=positive_float,
        default=5e-4,
        help="peak learning rate per 256 images, scaled with --batch-size (default 5e-4; lower it with weak "
        "augmentation or small data, raise --layer-decay towards 1 for networks far from converged)",
    )
    p.add_argument(
        "--min-lr", type=non_negative_float, default=1e-6, help="learning rate at the end of the cosine (default 1e-6)"
    )
    p.add_argument(
        "--warmup-epochs", type=non_negative_float, default=1.0, help="linear warm-up length in epochs (default 1)"
    )
    p.add_argument("--weight-decay", type=non_negative_float, default=0.05, help="AdamW weight decay (default 0.05)")
    p.add_argument(
        "--layer-decay",
        type=open_unit_float,
        default=0.75,
        help="layer-wise lr decay: block i of L trains at lr x decay^(L+1-i) (default 0.75; 1 disables; "
        "0.65 for ViT-B in BEiT/MAE, higher for shallow networks)",
    )
    p.add_argument("--label-smoothing", type=unit_below_one_float, default=0.1, help="label smoothing (default 0.1)")
    p.add_argument(
        "--randaugment",
        default="rand-m9-mstd0.5-mmax9-inc1",
        help="timm RandAugment policy string (default rand-m9-mstd0.5-inc1, DeiT's)",
    )
    p.add_argument("--no-randaugment", action="store_true", help="switch RandAugment off (colour jitter 0.4 instead)")
    p.add_argument("--mixup", type=non_negative_float, default=0.8, help="mixup alpha; 0 switches it off (default 0.8)")
    p.add_argument(
        "--cutmix", type=non_negative_float, default=1.0, help="cutmix alpha; 0 switches it off (default 1.0)"
    )
    p.add_argument(
        "--sit-heads",
        action="store_true",
        help="SiT checkpoints: classify from the rotation and contrastive tokens, averaging the two heads' logits",
    )
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per step (default 64; even with mixup)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the head, the views and the order (default 0)")
    add_init_comparison(p, "fine-tune", init_only=True)
    add_deprecated(p, "--at-init", "use --init-only", sets="init_only")
    add_device(p)
    add_strict(p)
    p.set_defaults(func=with_bad_inputs(run))


def run(args: argparse.Namespace) -> int:
    return run_protocol(args, partial(_finetune, args))


def _finetune(
    args: argparse.Namespace, cfg: PretrainConfig, backbone: Backbone, device: str, run_dir: Path
) -> tuple[Path, Path]:
    from vitssl.data.build import eval_transform
    from vitssl.eval.finetune import Classifier, finetune, save_finetune, train_transform
    from vitssl.eval.loading import labelled_sets

    s = _settings(args, device)
    train, val = labelled_sets(cfg, args.train, args.val, args.max_train, args.max_val, "fine-tune on")
    train.transform = train_transform(cfg, eval_transform(cfg).size, s)
    model = Classifier(backbone, len(train.classes), sit_heads=args.sit_heads)
    history = finetune(model, train, val, s)
    final, best = history[-1], max(history, key=lambda r: r["top1"])
    print(f"fine-tuned: final top-1 {final['top1']:.2f}% (epoch {final['epoch']}), best {best['top1']:.2f}%")
    return save_finetune(model, history, train.classes, run_dir, {**provenance(args), "settings": vars(s)})


def _settings(args: argparse.Namespace, device: str) -> FinetuneSettings:
    from vitssl.eval.finetune import FinetuneSettings

    return FinetuneSettings(
        epochs=args.epochs,
        lr=args.lr,
        min_lr=args.min_lr,
        warmup_epochs=args.warmup_epochs,
        weight_decay=args.weight_decay,
        layer_decay=args.layer_decay,
        label_smoothing=args.label_smoothing,
        randaugment=None if args.no_randaugment else args.randaugment,
        mixup=args.mixup,
        cutmix=args.cutmix,
        sit_heads=args.sit_heads,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=device,
        seed=args.seed,
    )
