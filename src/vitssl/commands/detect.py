"""``vitssl detect``: object detection on the pretrained backbone (ViTDet-style), scored by COCO box AP."""

from __future__ import annotations

import argparse

from vitssl.commands._shared import (
    add_checkpoint,
    add_device,
    add_init_comparison,
    add_strict,
    init_options,
    open_unit_float,
    positive_float,
    positive_int,
    results_dir,
    with_bad_inputs,
)

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
    add_init_comparison(p, "train and score")
    add_device(p)
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


def run(args: argparse.Namespace) -> int:
    from vitssl.detection.run import DetectRequest, run_detection
    from vitssl.device import resolve_device

    request = DetectRequest(
        args.source, args.data, args.detector, args.freeze, args.epochs, args.lr, args.layer_decay,
        batch_size=args.batch_size, image_size=args.image_size, fpn_channels=args.fpn_channels,
        max_train=args.max_train, max_val=args.max_val, num_workers=args.num_workers,
        device=str(resolve_device(args.device, "--device")), compare_init=args.compare_init, **init_options(args),
        arch=args.arch, mean=tuple(args.mean) if args.mean else None, std=tuple(args.std) if args.std else None,
    )  # fmt: skip
    out = run_detection(request)
    mode = "frozen backbone" if out["freeze"] else f"fine-tuned, layer decay {out['layer_decay']}"
    _print(
        out,
        f"detection ({out['detector']}, {mode}): {out['data']}, {out['image_size']} px, {len(out['classes'])} "
        f"classes, {out['train_images']} train / {out['val_images']} val images, COCO box AP %",
    )
    run_dir = results_dir(args)
    print(f"wrote {run_dir / 'detect.json'}, {run_dir / 'detector.pt'} and {run_dir / 'detect_predictions.png'}")
    return 0
