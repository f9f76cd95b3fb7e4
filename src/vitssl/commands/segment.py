"""``vitssl segment``: a linear semantic-segmentation probe on frozen patch tokens, scored by mIoU."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from vitssl.commands._shared import (
    add_checkpoint,
    add_deprecated,
    add_device,
    add_init_comparison,
    add_strict,
    load_frozen,
    positive_float,
    positive_int,
    results_dir,
    with_bad_inputs,
)

if TYPE_CHECKING:
    from vitssl.config import PretrainConfig
    from vitssl.eval.pairs import Pairs

EPILOG = """\
examples:
  vitssl segment runs/demo --compare-init                   # synthetic foreground masks, trained vs init
  vitssl segment runs/voc --train voc/train --val voc/val --size 224 --epochs 30

A folder of pairs holds images/<name>.<ext> and masks/<name>.png; mask pixels are class indices (0 background,
255 ignored). Writes RUN/segment.json and the probe as RUN/segment_probe.pt."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="linear segmentation probe on frozen patch tokens (mIoU), optionally pretrained vs initialisation",
        description="Train a linear layer per patch token (BatchNorm without affine + 1x1 convolution on the "
        "frozen final-norm tokens; logits bilinearly upsampled to the image; per-pixel cross-entropy) and score "
        "it by mean IoU, for the checkpoint and, with --compare-init, for the same network at initialisation, so "
        "that 'pretrained weights are a good starting point for segmentation' is measured.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_checkpoint(p)
    p.add_argument(
        "--train",
        default="synthetic:train",
        help="training image/mask pairs: a folder (see below) or synthetic:train (default)",
    )
    p.add_argument("--val", default="synthetic:test", help="validation pairs, likewise (default synthetic:test)")
    add_deprecated(p, "--train-pairs", "use --train", sets="train", value=True)
    add_deprecated(p, "--val-pairs", "use --val", sets="val", value=True)
    p.add_argument(
        "--size",
        type=positive_int,
        help="image side after resize + centre crop, a multiple of the patch (default: the run's eval size)",
    )
    p.add_argument("--binary", action="store_true", help="treat every non-zero mask class as one foreground class")
    p.add_argument(
        "--semantic",
        action="store_true",
        help="synthetic data: label the foreground with the shape's class (11 classes) instead of 1; asks the "
        "probe what the object is, not only where",
    )
    p.add_argument("--max-train", type=positive_int, default=2000, help="training pairs used (default 2000)")
    p.add_argument("--max-val", type=positive_int, default=1000, help="validation pairs used (default 1000)")
    p.add_argument("--epochs", type=positive_int, default=20, help="probe epochs over the frozen tokens (default 20)")
    p.add_argument(
        "--lr",
        type=positive_float,
        default=1e-3,
        help="AdamW learning rate (default 1e-3; tokens are normalised first)",
    )
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per step (default 64)")
    add_init_comparison(p, "train and score a probe on")
    add_deprecated(p, "--no-init", "the network at initialisation is only scored with --compare-init")
    add_device(p, workers=False)
    add_strict(p)
    p.set_defaults(func=with_bad_inputs(run))


def run(args: argparse.Namespace) -> int:
    import torch

    from vitssl.data.build import eval_transform
    from vitssl.eval.segment import SegmentSettings, segmentation_probe

    device, cfg, backbone = load_frozen(args)
    size = args.size or eval_transform(cfg).size
    train = _pairs(args, cfg, args.train, "train", size, args.max_train)
    val = _pairs(args, cfg, args.val, "val", size, args.max_val)
    settings = SegmentSettings(args.epochs, args.lr, batch_size=args.batch_size, device=device)
    results: dict[str, dict] = {}
    networks = [("pretrained", backbone)]
    if args.compare_init:
        networks.append(("init", load_frozen(args, at_init=True)[2]))
    run_dir = results_dir(args)
    for name, net in networks:
        results[name], probe = segmentation_probe(net, train, val, settings)
        if name == "pretrained":
            torch.save(
                {"state_dict": probe.state_dict(), "num_classes": results[name]["num_classes"]},
                run_dir / "segment_probe.pt",
            )
    _print_results(args, size, results)
    payload = {
        "checkpoint": str(args.source),
        "train": args.train,
        "val": args.val,
        "size": size,
        "epochs": args.epochs,
        "lr": args.lr,
        **results,
    }
    (run_dir / "segment.json").write_text(json.dumps(payload, indent=2))
    print(f"wrote {run_dir / 'segment.json'}")
    return 0


def _pairs(args: argparse.Namespace, cfg: PretrainConfig, spec: str, split: str, size: int, cap: int) -> Pairs:
    """Image/mask pairs of one split, resized and normalised as the run's evaluation transform does."""
    from vitssl.eval.pairs import load_pairs

    data = cfg.data
    return load_pairs(spec, split, size, data.mean, data.std, data.cache_dir, cap, args.binary, semantic=args.semantic)


def _print_results(args: argparse.Namespace, size: int, results: dict[str, dict]) -> None:
    print(
        f"linear segmentation probe: {args.train} -> {args.val}, {size} px, "
        f"{results['pretrained']['num_classes']} classes"
    )
    for name in ("init", "pretrained"):
        if name in results:
            r = results[name]
            label = "at initialisation" if name == "init" else "pretrained"
            print(f"  {label:<18} mIoU {r['miou']:6.2f}%   pixel accuracy {r['pixel_accuracy']:6.2f}%")
