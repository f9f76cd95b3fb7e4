"""``vitssl pca``: the first three principal components of patch features, as RGB pictures."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitssl.commands._shared import (
    add_checkpoint,
    add_device,
    add_max_side,
    add_strict,
    finite_float,
    load_frozen,
    positive_int,
    results_dir,
    unit_float,
    with_bad_inputs,
)
from vitssl.log import logger

EPILOG = """\
examples:
  vitssl pca runs/demo a.png b.png c.png d.png
  vitssl pca runs/cifar photo1.jpg photo2.jpg --max-side 480 --threshold 0.5 --out pca.png
  vitssl pca runs/demo cats/ --no-background-removal        # every photo below the folder

Photos are analysed at their own resolution and aspect ratio: a longer side above --max-side is scaled down to
it, then both sides are cropped to a multiple of the patch size (a 640x480 photo at patch 16 gives 40x30 patches).
--resize N sets the short side to N instead and then --max-side is not applied.

Writes RUN/pca.png (images on top, PCA colours below) and RUN/pca.npy ((images, rows, cols, 3) when all images
share a size). Use several images of the same kind of object: the PCA is joint, so matching parts get matching
colours when the features are semantic."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pca",
        help="PCA of patch features mapped to RGB (background removed by thresholding the first component)",
        description="A joint PCA over the final-norm patch tokens of all given images; the first component, "
        "standardised and oriented so that image borders score low, is thresholded to remove the background; a "
        "second PCA over the foreground patches gives the three components shown as red, green and blue "
        "(DINOv2, Oquab et al. 2023, figure 1).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_checkpoint(p)
    p.add_argument(
        "images",
        nargs="+",
        metavar="PHOTOS",
        help="image files or folders of images (searched recursively), of any size and aspect ratio; "
        "'synthetic': one test image per class of the built-in synthetic set",
    )
    p.add_argument("--out", type=Path, help="PNG to write (default: RUN/pca.png; the .npy goes next to it)")
    add_max_side(p)
    p.add_argument(
        "--resize",
        type=positive_int,
        help="scale the short side to this many pixels instead of applying --max-side (default: keep the "
        "photo's own resolution up to --max-side)",
    )
    p.add_argument(
        "--threshold",
        type=finite_float,
        default=0.0,
        help="cut on the standardised first component; patches below it are background (default 0: the mean; "
        "raise it to keep less)",
    )
    p.add_argument(
        "--min-fraction",
        type=unit_float,
        default=0.1,
        help="each image keeps at least this fraction of its patches, those scoring highest on the first "
        "component, so that none comes out blank (default 0.1; 0: the cut alone)",
    )
    p.add_argument("--no-background-removal", action="store_true", help="colour every patch (plain 3-component PCA)")
    add_device(p, workers=False)
    add_strict(p)
    p.set_defaults(func=with_bad_inputs(run))


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from vitssl.data.views.normalise import denormalise
    from vitssl.eval.attention_io import patch_multiple
    from vitssl.eval.images import expand_images, image_to_tensor, load_readable
    from vitssl.eval.pca import pca_rgb
    from vitssl.report.figures import image_pairs_grid

    device, cfg, backbone = load_frozen(args)
    # all checked first: a missing file stops here, an unreadable one is skipped
    images = [image for _, image in load_readable(expand_images(args.images, cfg.data.cache_dir))]
    tensors, tokens = [], []
    with torch.no_grad():
        for image in images:
            x = image_to_tensor(
                image, cfg.data.mean, cfg.data.std, patch_multiple(backbone), args.resize, args.max_side
            )
            feats = backbone(x.to(device))
            tensors.append(x)
            tokens.append(feats.tokens[0].float().cpu().reshape(*feats.grid, -1))
    result = pca_rgb(
        tokens,
        remove_background=not args.no_background_removal,
        threshold=args.threshold,
        min_fraction=args.min_fraction,
    )
    out = args.out or results_dir(args) / "pca.png"
    pictures = [denormalise(x, cfg.data.mean, cfg.data.std)[0] for x in tensors]
    title = f"PCA of patch features, components explain {', '.join(f'{r:.0%}' for r in result.explained)}"
    image_pairs_grid(pictures, result.colours, out, title)
    if len({c.shape for c in result.colours}) == 1:
        np.save(out.with_suffix(".npy"), np.stack(result.colours))
    logger.info(f"wrote {out} ({len(images)} images; foreground {np.mean([m.mean() for m in result.foreground]):.0%})")
    return 0
