"""``vitssl embed``: L2-normalised features of a folder of images, as ``.npy`` plus a JSON index."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitssl.commands._shared import (
    add_checkpoint,
    add_device,
    add_strict,
    load_source,
    positive_int,
    with_bad_inputs,
)

EPILOG = """\
examples:
  vitssl embed runs/demo photos/ --out photos.npy
  vitssl embed runs/cifar a.png b.png --out ab.npy --tokens

Writes OUT.npy ((images, D) float32, unit-norm rows), OUT.json (paths in row order) and with --tokens
OUT.tokens.npy ((images, tokens, D), as the backbone returns them). Unreadable images get no row; one line at
the end counts and names them (--strict: stop at the first). Load with
np.load("OUT.npy", mmap_mode="r") and json.load(open("OUT.json"))["paths"]."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="L2-normalised features of a folder of images (.npy + index)",
        description="Embed images with a run's evaluation backbone (the teacher where there is one) and its "
        "evaluation transform; rows are L2-normalised, in the sorted order of the images' relative paths.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_checkpoint(p)
    p.add_argument("images", nargs="+", help="a folder (searched recursively) or image files")
    p.add_argument("--out", type=Path, required=True, help="features file (.npy); the index goes next to it (.json)")
    p.add_argument("--tokens", action="store_true", help="also write the patch tokens (OUT.tokens.npy; can be large)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (default 64)")
    add_device(p)
    add_strict(p)
    p.set_defaults(func=with_bad_inputs(run))


def run(args: argparse.Namespace) -> int:
    from vitssl.device import resolve_device
    from vitssl.export.embed import embed_images, list_inputs

    paths, names = list_inputs(args.images)  # a wrong path fails before the model is built
    device = resolve_device(args.device, key="--device")
    cfg, backbone = load_source(args, device=str(device))
    result = embed_images(
        cfg,
        backbone,
        paths,
        names,
        args.out,
        tokens=args.tokens,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=device,
        run=str(args.source),
    )
    print(f"wrote {result.count} x {result.dim} features to {result.features} (index {result.index})")
    return 0
