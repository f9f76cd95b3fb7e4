"""``vitssl attention``: last-block attention maps with thresholded masks, and their foreground Jaccard."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitssl.commands._shared import (
    add_checkpoint,
    add_device,
    add_init_comparison,
    add_max_side,
    add_strict,
    load_frozen,
    positive_int,
    results_dir,
    unit_float,
    with_bad_inputs,
)
from vitssl.errors import VitsslError

EPILOG = """\
examples:
  vitssl attention runs/demo photo.jpg other.png
  vitssl attention runs/dino_vit_small holidays/ --out pictures/  # every photo below the folder
  vitssl attention runs/demo photo.jpg --max-side 480 --threshold 0.5 --out pictures/
  vitssl attention runs/esvit_swin/last.pt photo.jpg --query 3,4
  vitssl attention runs/demo --score --compare-init   # Jaccard with the synthetic foregrounds, trained vs init

Photos are analysed at their own resolution and aspect ratio: a longer side above --max-side is scaled down to
it, then both sides are cropped to a multiple of the patch size (a 640x480 photo at patch 16 gives 40x30 patches).
--resize N sets the short side to N instead and then --max-side is not applied.

Per image, in the output folder: IMAGE_attention.png (image, mean map, every head; below, the thresholded masks
over the image), IMAGE_attention.npy (the raw (heads, rows, cols) maps at patch resolution, each head summing to
1) and a folder IMAGE/ with image.png (the analysed image), head0.png ... and mean.png (each map at the image's
size), head0_mask.png ... and mean_mask.png (white: the patches a mask keeps) and masks.npy ((heads + 1, rows,
cols) booleans, every head then the head mean). --score writes RUN/attention_score.json."""


def _query(text: str) -> tuple[int, int]:
    try:
        row, col = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--query takes ROW,COL on the last-stage patch grid, e.g. 3,4; got {text}"
        ) from None
    return row, col


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attention",
        help="attention maps of the last block (per head, mean, thresholded masks) and their foreground Jaccard",
        description="Self-attention of the last block, recomputed explicitly (training keeps fused attention). "
        "ViT: the [CLS] query's attention over the patches, per head and averaged (DINO, Caron et al. 2021, "
        "figure 1). Swin: the attention of one patch query inside its window (EsViT, Li et al. 2021). Masks keep "
        "the smallest set of patches holding --threshold of the attention mass (DINO's figure 3 protocol).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_checkpoint(p)
    p.add_argument(
        "images",
        nargs="*",
        metavar="PHOTOS",
        help="image files or folders of images (searched recursively), of any size and aspect ratio; "
        "'synthetic': one test image per class of the built-in synthetic set",
    )
    p.add_argument("--out", type=Path, help="output folder (default: RUN/attention)")
    add_max_side(p)
    p.add_argument(
        "--threshold",
        type=unit_float,
        default=0.6,
        help="fraction of the attention mass each mask keeps (default 0.6, DINO's value; lower: tighter masks)",
    )
    p.add_argument(
        "--resize",
        type=positive_int,
        help="scale the short side to this many pixels instead of applying --max-side (default: keep the "
        "photo's own resolution up to --max-side)",
    )
    p.add_argument("--query", type=_query, help="Swin only: ROW,COL of the query patch (default: the centre)")
    p.add_argument(
        "--score",
        action="store_true",
        help="measure attention as segmentation: Jaccard between the thresholded [CLS] attention (head mean, "
        "and the best head) and the true foreground",
    )
    add_init_comparison(p, "score, with --score,")
    p.add_argument(
        "--data",
        default="synthetic",
        help="image/mask pairs for --score: 'synthetic' (default; its test split) or a folder with images/ "
        "and masks/ (non-zero mask pixels are foreground)",
    )
    p.add_argument("--max-images", type=positive_int, default=500, help="pairs scored by --score (default 500)")
    add_device(p, workers=False)
    add_strict(p)
    p.set_defaults(func=with_bad_inputs(run))


def run(args: argparse.Namespace) -> int:
    from vitssl.eval.attention_io import render_attention, save_scores, score_networks
    from vitssl.eval.images import expand_images

    if not args.images and not args.score:
        raise VitsslError("nothing to do: pass image files to draw, and/or --score to measure the Jaccard index")
    if args.compare_init and not args.score:
        raise VitsslError("--compare-init compares the Jaccard of --score; add --score (the maps are drawn once)")
    device, cfg, backbone = load_frozen(args)
    run_dir = results_dir(args)
    if args.images:
        out_dir = args.out or run_dir / "attention"
        paths = expand_images(args.images, cfg.data.cache_dir)
        written = render_attention(
            cfg, backbone, paths, out_dir, args.threshold, args.resize, args.query, device, args.max_side
        )
        for files in written:
            rows, cols = files.grid
            print(f"wrote {files.figure}, {files.maps.name} and {files.folder.name}/ ({rows}x{cols} patches)")
    if args.score:
        nets = {"pretrained": backbone}
        if args.compare_init:
            nets["init"] = load_frozen(args, at_init=True)[2]
        scores = score_networks(cfg, nets, args.data, args.threshold, args.max_images, device=device)
        print(
            f"attention as segmentation: Jaccard with the true foreground "
            f"({args.data}, {scores['pretrained'].images} images, "
            f"masks keep {args.threshold:.0%} of the [CLS] attention mass)"
        )
        for name, label in (("init", "at initialisation"), ("pretrained", "pretrained")):
            if name in scores:
                s = scores[name]
                print(f"  {label:<18} mean-of-heads map {s.mean_map:6.2f}%   best head {s.best_head:6.2f}%")
        path = save_scores(
            scores,
            run_dir / "attention_score.json",
            {"checkpoint": str(args.source), "data": args.data, "threshold": args.threshold},
        )
        print(f"wrote {path}")
    return 0
