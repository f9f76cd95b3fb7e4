"""``vitssl detect``: object detection on the pretrained backbone (ViTDet-style), scored by COCO box AP."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from vitssl.commands._shared import (
    add_checkpoint,
    add_device,
    add_strict,
    load_source,
    non_negative_int,
    open_unit_float,
    positive_float,
    positive_int,
    results_dir,
    with_bad_inputs,
)

if TYPE_CHECKING:
    from vitssl.data.detection import DetectionSet

EPILOG = """\
examples:
  vitssl detect runs/demo --compare-init                    # built-in synthetic_det, pretrained vs init
  vitssl detect runs/demo --freeze --detector fcos --epochs 6
  vitssl detect runs/voc --data /data/VOC2007 --image-size 512 --epochs 12 --device cuda

--data takes synthetic_det, a folder with train/ and val/ (or test/) sub-folders, a VOC folder with
ImageSets/Main/train.txt and val.txt, or one detection folder (every fifth image is held out). A detection folder
holds images/ + annotations.json (COCO) or JPEGImages/ + Annotations/ (Pascal VOC XML).
Writes RUN/detect.json, the trained detector as RUN/detector.pt and RUN/detect_predictions.png."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="object detection on the backbone (box AP, AP50, AP75), pretrained vs initialisation",
        description="Train a torchvision detector (Faster R-CNN, RetinaNet or FCOS) on the run's backbone: "
        "ViTDet's simple feature pyramid for a ViT, an FPN over the stages for a Swin; the backbone is "
        "fine-tuned with layer-wise lr decay, or frozen with --freeze. Scores COCO box AP with torchmetrics, "
        "optionally also for the same network at initialisation (--compare-init).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_checkpoint(p, image_size=False)
    p.add_argument("--data", default="synthetic_det", help="detection data (default synthetic_det; see below)")
    p.add_argument(
        "--detector", default="faster_rcnn", choices=("faster_rcnn", "retinanet", "fcos"), help="default faster_rcnn"
    )
    p.add_argument("--freeze", action="store_true", help="keep the backbone fixed; train the pyramid and heads only")
    p.add_argument("--epochs", type=positive_int, default=12, help="passes over the training images (default 12)")
    p.add_argument("--lr", type=positive_float, default=2e-4, help="AdamW peak learning rate (default 2e-4)")
    p.add_argument(
        "--layer-decay", type=open_unit_float, default=0.75, help="lr factor per block towards the input (default 0.75)"
    )
    p.add_argument(
        "--image-size",
        type=positive_int,
        help="short side the images are resized to (default: the median short side of the training "
        "images, at most 512; 64 for synthetic_det)",
    )
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per step (default 8)")
    p.add_argument("--max-train", type=positive_int, help="cap the training images (fixed random subset)")
    p.add_argument("--max-val", type=positive_int, help="cap the validation images (fixed random subset)")
    p.add_argument(
        "--fpn-channels",
        type=positive_int,
        help="width of the pyramid; a multiple of 32 for FCOS (default 256; 128 for backbones narrower than 384)",
    )
    p.add_argument(
        "--compare-init", action="store_true", help="also train and score the same network at initialisation"
    )
    add_device(p, workers=False)
    p.add_argument("--num-workers", type=non_negative_int, default=0, help="data loader worker processes (default 0)")
    add_strict(p)
    p.set_defaults(func=with_bad_inputs(run))


def _print(results: dict, header: str) -> None:
    print(header)
    print(f"  {'network':<18} {'AP':>6} {'AP50':>6} {'AP75':>6}")
    for name in ("init", "pretrained"):
        if name in results:
            r = results[name]
            label = "at initialisation" if name == "init" else "pretrained"
            print(f"  {label:<18} {r['ap']:6.2f} {r['ap50']:6.2f} {r['ap75']:6.2f}")


def _default_size(train: DetectionSet) -> int:
    """The median short side of the training images, at most 512 (small images are not blown up)."""
    import statistics

    sides = [min(s.size) for s in train.samples if s.size]
    return min(512, int(statistics.median(sides))) if sides else 512


def run(args: argparse.Namespace) -> int:
    import torch

    from vitssl.data.detection import load_detection
    from vitssl.device import resolve_device
    from vitssl.eval.detect import DetectSettings, evaluate_detector, train_detector
    from vitssl.eval.detect_figures import plot_detections
    from vitssl.models.detection import build_detector, build_pyramid

    device = str(resolve_device(args.device, "--device"))
    cfg, backbone = load_source(args, device=device)
    train, val = load_detection(args.data, cfg.data.cache_dir, args.max_train, args.max_val)
    size = args.image_size or train.native_size or _default_size(train)
    channels = args.fpn_channels or (256 if backbone.embed_dim >= 384 else 128)
    s = DetectSettings(
        args.detector, args.freeze, args.epochs, args.lr, args.layer_decay, batch_size=args.batch_size,
        image_size=size, fpn_channels=channels, num_workers=args.num_workers, device=device,
    )  # fmt: skip
    run_dir = results_dir(args)
    results: dict[str, dict] = {}
    for name in ("pretrained", "init") if args.compare_init else ("pretrained",):
        if name == "init":
            backbone = load_source(args, at_init=True, device=device)[1]
        torch.manual_seed(s.seed)  # the same pyramid and heads at the start for both networks
        pyramid = build_pyramid(backbone, channels)
        pyramid = pyramid.freeze() if s.freeze else pyramid.unfreeze()
        model = build_detector(pyramid, s.detector, len(train.class_names), size, cfg.data.mean, cfg.data.std)
        results[name] = train_detector(model, pyramid, train, s)
        results[name].update(evaluate_detector(model, val, s))
        if name == "pretrained":
            meta = {"detector": s.detector, "class_names": train.class_names, "image_size": size}
            torch.save({"state_dict": model.state_dict(), "fpn_channels": channels, **meta}, run_dir / "detector.pt")
            plot_detections(model, val, run_dir / "detect_predictions.png", device, title=f"{s.detector}, pretrained")
    mode = "frozen backbone" if s.freeze else f"fine-tuned, layer decay {s.layer_decay}"
    _print(
        results,
        f"detection ({s.detector}, {mode}): {args.data}, {size} px, {len(train.class_names)} classes, "
        f"{len(train.samples)} train / {len(val.samples)} val images, COCO box AP %",
    )
    payload = {
        "checkpoint": str(args.source),
        "data": args.data,
        "detector": s.detector,
        "freeze": s.freeze,
        "epochs": s.epochs,
        "lr": s.lr,
        "layer_decay": s.layer_decay,
        "image_size": size,
        "fpn_channels": channels,
        "classes": train.class_names,
        "train_images": len(train.samples),
        "val_images": len(val.samples),
        "data_fixes": {"train": train.fixes, "val": val.fixes},
        **results,
    }
    (run_dir / "detect.json").write_text(json.dumps(payload, indent=2))
    print(f"wrote {run_dir / 'detect.json'}, {run_dir / 'detector.pt'} and {run_dir / 'detect_predictions.png'}")
    return 0
