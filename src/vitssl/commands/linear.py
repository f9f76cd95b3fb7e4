"""``vitssl linear``: the linear-probe protocol of DINO / EsViT on a frozen backbone."""

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
    positive_float,
    positive_int,
    provenance,
    run_protocol,
    seed_int,
    unit_float,
    with_bad_inputs,
)

if TYPE_CHECKING:
    from vitssl.config import PretrainConfig
    from vitssl.models.backbones import Backbone

EPILOG = """\
examples:
  vitssl linear runs/demo --fast --epochs 30
  vitssl linear runs/cifar --train cifar10/train --val cifar10/test --epochs 100
  vitssl linear runs/cifar/last.pt --fast --max-train 5000 --max-val 1000 --lr 0.001 0.01 0.1
  vitssl linear runs/demo --fast --compare-init          # also RUN/linear_fast_init.json, at initialisation

Writes RUN/linear.json (RUN/linear_fast.json in fast mode) with every epoch, the final and the best epoch, and
the trained layer as RUN/linear_head.pt (linear_head_fast.pt). The best epoch is chosen on the validation set,
so it is optimistic; quote the final epoch unless you sweep hyper-parameters on a separate split."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "linear",
        help="linear-probe evaluation of a frozen backbone",
        description="Train one linear layer on the frozen features of a pretrained backbone (DINO, Caron et al. "
        "2021; EsViT, Li et al. 2021). ViT: concatenated [CLS] tokens of the last n blocks, each through the final "
        "norm (optionally plus the mean patch token); Swin: token means of the last 4 blocks. SGD with momentum, "
        "no weight decay, per-iteration cosine schedule. The standard mode re-encodes RandomResizedCrop + flip "
        "views every epoch; --fast extracts the features once without augmentation (much cheaper; usually a "
        "little lower, and labelled as such in every output).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_checkpoint(p)
    add_labelled_sets(p)
    p.add_argument(
        "--fast",
        action="store_true",
        help="extract frozen features once (evaluation transform, no augmentation) and train on them",
    )
    p.add_argument(
        "--n-last-blocks",
        type=positive_int,
        help="blocks whose pooled outputs are concatenated (default: 4 for ViT-S and smaller and for Swin, "
        "1 for ViT-B and larger, as in the papers)",
    )
    p.add_argument(
        "--avgpool",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="append the mean of the last block's patch tokens (ViT only; default: on for ViT-B and larger)",
    )
    p.add_argument(
        "--epochs", type=positive_int, default=100, help="training epochs (default 100, the papers' setting)"
    )
    p.add_argument(
        "--lr",
        type=positive_float,
        nargs="+",
        default=[1e-3],
        help="learning rate per 256 images, scaled linearly with --batch-size (default 1e-3 as in DINO; short runs "
        "on small data often want 1e-2..1e-1). Several values with --fast: a sweep on the same features, keeping "
        "the head with the best final top-1 (chosen on the validation set, so say so when you quote it)",
    )
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per step (default 256)")
    p.add_argument("--momentum", type=unit_float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument(
        "--weight-decay", type=non_negative_float, default=0.0, help="SGD weight decay (default 0, as in DINO)"
    )
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the layer's init and the data order (default 0)")
    add_device(p)
    add_init_comparison(p, "probe", init_only=True)
    add_deprecated(p, "--at-init", "use --init-only", sets="init_only")
    add_strict(p)
    p.set_defaults(func=with_bad_inputs(run))


def run(args: argparse.Namespace) -> int:
    return run_protocol(args, partial(_probe, args))


def _probe(args: argparse.Namespace, cfg: PretrainConfig, backbone: Backbone, device: str, run_dir: Path) -> list[Path]:
    from vitssl.eval.linear import LinearSettings, format_linear, linear_probe, save_linear

    settings = LinearSettings(
        train=args.train,
        val=args.val,
        n_last_blocks=args.n_last_blocks,
        avgpool=args.avgpool,
        epochs=args.epochs,
        lr=args.lr[0],
        sweep=tuple(args.lr) if len(args.lr) > 1 else (),
        batch_size=args.batch_size,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        fast=args.fast,
        max_train=args.max_train,
        max_val=args.max_val,
        num_workers=args.num_workers,
        device=device,
        seed=args.seed,
    )
    result = linear_probe(cfg, backbone, settings)
    print(format_linear(result))
    extra = {**provenance(args), "lr_values": args.lr, "epochs": args.epochs}
    return list(save_linear(result, run_dir, extra))
