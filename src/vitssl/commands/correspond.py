"""``vitssl correspond``: region matches between two views, drawn or scored (EsViT, Li et al. 2021, section 4.3)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vitssl.commands._shared import (
    add_checkpoint,
    add_device,
    add_init_comparison,
    load_frozen,
    positive_int,
    results_dir,
    seed_int,
    unit_float,
)

if TYPE_CHECKING:
    import torch

    from vitssl.config import PretrainConfig
    from vitssl.models.backbones import Backbone

EPILOG = """\
examples:
  vitssl correspond runs/esvit_demo photo.png                  # view 2 = flipped + jittered view 1
  vitssl correspond runs/esvit_demo photo.png other.png --top 10 --out matches.png
  vitssl correspond runs/esvit_demo --score synthetic --max-images 500 --compare-init
  vitssl correspond runs/esvit_cifar --score /data/cifar10/test --size 32

Drawing: the `--top` most similar region pairs are boxed and joined in one colour each, best first. Scoring:
each image's view 2 is its horizontal flip with colour jitter; a match is right when it lands on the mirrored
region; the accuracy is over each image's `--top` most confident matches (docs/methods.md 2.4)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "correspond",
        help="region correspondences between two views: a picture, or the flip-correspondence accuracy",
        description="Match every region (final-norm token of the teacher backbone: Swin's last-stage tokens or "
        "a ViT's patch tokens) of view 1 to its most similar region of view 2 by cosine similarity. With one or "
        "two images, draw the best matches side by side as a PNG; with --score, measure how often the best "
        "matches between an image and its horizontal flip land on the mirrored region.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_checkpoint(p)
    p.add_argument(
        "images",
        nargs="*",
        help="one image (view 2 = its flip with colour jitter) or two images; 'synthetic': the first test image "
        "of the built-in synthetic set",
    )
    p.add_argument("--score", metavar="FOLDER", help="a folder of images (labelled or not) or a named dataset to score")
    p.add_argument("--top", type=positive_int, default=10, help="matches drawn or scored per image pair (default 10)")
    p.add_argument(
        "--size",
        type=positive_int,
        help="side of the centre crop fed to the network (default: the run's data.eval_size, else its global "
        "crop size); larger crops give more, smaller regions",
    )
    p.add_argument("--max-images", type=positive_int, default=1000, help="images scored with --score (default 1000)")
    p.add_argument(
        "--jitter",
        type=unit_float,
        default=0.2,
        help="colour-jitter strength of view 2 (brightness, contrast; half of it for saturation; default 0.2; "
        "0 = a pure flip). The score depends strongly on it: see docs/esvit.md for measured values",
    )
    p.add_argument(
        "--seed", type=seed_int, default=0, help="seed of view 2's jitter and of the image subset (default 0)"
    )
    add_init_comparison(p, "score, with --score,")
    p.add_argument("--out", type=Path, help="PNG to write (default: RUN/correspondence.png)")
    p.add_argument(
        "--batch-size", type=positive_int, default=128, help="image pairs per forward pass when scoring (default 128)"
    )
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitssl.errors import VitsslError

    if args.top < 1:
        raise VitsslError(f"--top must be >= 1, got {args.top}")
    if args.score:
        if args.images:
            raise VitsslError("give either images to draw or --score FOLDER, not both")
        return _score(args)
    if len(args.images) not in (1, 2):
        raise VitsslError(
            f"give one image (matched with its flip) or two images to draw, got {len(args.images)}; "
            "or use --score FOLDER to measure the flip-correspondence accuracy"
        )
    return _draw(args)


def _setup(args: argparse.Namespace, at_init: bool = False) -> tuple[PretrainConfig, Backbone, torch.device, int]:
    """The run's config, its frozen evaluation backbone, the device and the side of the crop fed to it."""
    import torch

    device, cfg, backbone = load_frozen(args, at_init=at_init)
    size = args.size or cfg.data.eval_size or cfg.crops.global_size
    return cfg, backbone, torch.device(device), size


def _draw(args: argparse.Namespace) -> int:
    import torch

    from vitssl.data.images import load_rgb
    from vitssl.data.views.normalise import to_image
    from vitssl.eval.correspondence import FlipPairTransform, draw_matches, match_views
    from vitssl.eval.images import expand_images

    cfg, backbone, device, size = _setup(args)
    pair = FlipPairTransform(size, cfg.data.mean, cfg.data.std, jitter=args.jitter)
    images = [expand_images([arg], cfg.data.cache_dir)[0] for arg in args.images]  # 'synthetic': its first image
    first = load_rgb(images[0])
    generator = torch.Generator().manual_seed(args.seed)
    if len(images) == 2:
        view1, view2 = pair.crop(first), pair.crop(load_rgb(images[1]))
    else:
        view1, view2 = pair(first, generator)
    matches = match_views(backbone, view1.to(device), view2.to(device), top=args.top)
    picture = draw_matches(
        to_image(view1, cfg.data.mean, cfg.data.std), to_image(view2, cfg.data.mean, cfg.data.std), matches
    )
    out = args.out or results_dir(args) / "correspondence.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out)
    sims = ", ".join(f"{s:.2f}" for s in matches.similarity.tolist())
    print(f"{len(matches.source)} best matches (cosine {sims}) on a {matches.grid1[0]}x{matches.grid1[1]} grid")
    print(f"wrote {out}")
    return 0


def _score(args: argparse.Namespace) -> int:
    import json

    from vitssl.data.loading.loader import build_loader
    from vitssl.data.sources.folders import ImageFolderDataset
    from vitssl.data.sources.named import NAMED_DATASETS, resolve_dataset
    from vitssl.eval.correspondence import FlipPairTransform, flip_correspondence_accuracy

    cfg, backbone, device, size = _setup(args)
    spec = args.score
    if spec in NAMED_DATASETS:
        spec += ":test"  # score on images the network did not train on
    root, _ = resolve_dataset(spec, "train", cfg.data.cache_dir)
    dataset = ImageFolderDataset(
        root,
        labelled=False,
        transform=FlipPairTransform(size, cfg.data.mean, cfg.data.std, jitter=args.jitter),
        cache="none",
        max_images=args.max_images,
        subset_seed=args.seed,
        seed=args.seed,
        config_key="--score",
    )
    loader = build_loader(dataset, args.batch_size, args.num_workers, seed=args.seed, shuffle=False, drop_last=False)
    results = {"pretrained": flip_correspondence_accuracy(backbone, loader, device, args.top)}
    if args.compare_init:
        _, init_backbone, _, _ = _setup(args, at_init=True)
        results["init"] = flip_correspondence_accuracy(init_backbone, loader, device, args.top)
    print(f"flip-correspondence accuracy (top-{args.top} matches per image, {len(dataset)} images, {size} px):")
    for name, value in results.items():
        print(f"  {name:<11} {value:6.2f}%")
    out = results_dir(args) / "correspondence.json"
    out.write_text(json.dumps({"top": args.top, "images": len(dataset), "size": size, **results}, indent=2))
    print(f"wrote {out}")
    return 0
