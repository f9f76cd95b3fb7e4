"""``vitssl reconstruct``: corrupt images the way a SiT run did and show what its network restores."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitssl.commands._shared import add_device, init_options, positive_int, seed_int

EPILOG = """\
examples:
  vitssl reconstruct runs/sit_vit_tiny_cifar10 /data/cifar10/test --count 12
  vitssl reconstruct runs/sit/last.pt photo1.png photo2.jpg --out recon.png --augment

Writes one PNG: per image a column with the clean (rotated) view, the corrupted input, the reconstruction and
the corruption mask (white = corrupted). Corruptions, rotations and crops are drawn from --seed, so the same
command gives the same picture."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reconstruct",
        help="picture of a SiT network restoring corrupted images",
        description="Apply a SiT run's corruptions (grayscale / blur patches, random drop and replace, as "
        "configured in its sit.* settings) to images and draw the network's reconstruction (Atito et al. 2021, "
        "SiT, arXiv 2104.03602). Random replace copies from the next image in the list.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="SiT run folder (uses its last.pt) or a checkpoint file written by vitssl")
    p.add_argument("images", nargs="+", help="image files, or folders searched recursively for images")
    p.add_argument(
        "--count",
        type=positive_int,
        default=8,
        help="at most this many images (default 8), evenly spaced over the images found",
    )
    p.add_argument("--out", type=Path, help="PNG to write (default: RUN/reconstruction.png)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the corruptions and rotations (default 0)")
    p.add_argument(
        "--augment",
        action="store_true",
        help="use the training crops (random resized crop, flip, jitter) instead of the centred image",
    )
    add_device(p, workers=False)
    p.set_defaults(func=run)


def _image_files(specs: list[str], count: int) -> list[Path]:
    from vitssl.data.images import is_image_file
    from vitssl.data.sources.discovery import find_images
    from vitssl.errors import VitsslError

    files: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            files.extend(find_images(path))
        elif path.is_file() and is_image_file(path):
            files.append(path)
        else:
            raise VitsslError(f"{spec} is neither an image file nor a folder; pass images or folders of images")
    if not files:
        raise VitsslError(f"no images found in {' '.join(specs)}; pass image files or folders that contain some")
    if len(files) <= count:
        return files
    # evenly spaced over the sorted list, so a class-per-folder data set shows several classes
    return [files[i * len(files) // count] for i in range(count)]


def run(args: argparse.Namespace) -> int:
    import torch

    from vitssl.checkpoints import run_dir_of
    from vitssl.data.images import load_rgb
    from vitssl.data.seeding import sample_generator
    from vitssl.data.views.multicrop import CropSpec
    from vitssl.device import resolve_device
    from vitssl.errors import VitsslError
    from vitssl.eval.features import batch_field
    from vitssl.eval.loading import load_method
    from vitssl.methods.sit.method import SiT, corruption_pipeline
    from vitssl.methods.sit.pictures import save_reconstruction_grid
    from vitssl.methods.sit.views import SiTViewTransform

    if args.count < 1:
        raise VitsslError(f"--count must be >= 1, got {args.count}")
    cfg, method = load_method(args.checkpoint, **init_options(args))
    if not isinstance(method, SiT):
        raise VitsslError(
            f"{args.checkpoint} is a '{cfg.method}' run; vitssl reconstruct needs a SiT run (method: sit)"
        )
    files = _image_files(args.images, args.count)
    crop = method.views[0]
    if not args.augment:  # the whole image, centre-cropped to a square: scale 1, ratio 1, no flip or jitter
        crop = CropSpec(size=crop.size, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0, jitter_p=0, grayscale_p=0)
    transform = SiTViewTransform([crop], corruption_pipeline(cfg), cfg.data.mean, cfg.data.std, method.rotations)
    samples = [
        {"views": transform(load_rgb(f), sample_generator(args.seed, 0, i)), "label": -1, "index": i, "skipped": 0}
        for i, f in enumerate(files)
    ]
    batch = method.train_collate()(samples)
    device = resolve_device(args.device)
    method.to(device)
    views, targets, masks = (batch_field(batch, name)[0] for name in ("views", "targets", "masks"))
    with torch.no_grad():
        recon = method.reconstruct(views.to(device)).cpu()
    out = args.out or run_dir_of(args.checkpoint) / "reconstruction.png"
    save_reconstruction_grid(targets, views, recon, masks, cfg.data.mean, cfg.data.std, out)
    print(f"wrote {out} ({len(files)} images: clean / corrupted / reconstructed / mask)")
    return 0
