"""``vitssl shards``: pack an image folder into WebDataset tar shards for training at scale."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitssl.commands._shared import add_strict, bad_image_policy, seed_int, with_bad_inputs

EPILOG = """\
examples:
  vitssl shards /data/imagenet/train /data/shards
  vitssl shards /data/imagenet/train /data/shards --shard-size 2000 --prefix imagenet-train
  vitssl pretrain configs/dino/vit_small_imagenet.yaml data.train=/data/shards

Writes OUT_DIR/PREFIX-000000.tar, PREFIX-000001.tar, ... and OUT_DIR/PREFIX-index.json (shard names, samples per
shard, class names). Each sample keeps the image file's bytes as stored (no re-encoding), its class index as
"cls" when the folder is laid out as IMAGE_FOLDER/<class>/<image>, and a key made from its relative path.
Unreadable images are left out, counted and named in one line at the end (--strict: stop at the first). Train
on the folder, the index file, or a brace pattern such as /data/shards/PREFIX-{000000..000123}.tar (see
docs/data.md)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shards",
        help="pack an image folder into WebDataset tar shards (plus a small JSON index)",
        description="Pack every image below IMAGE_FOLDER (recursively; labelled by class sub-folder when the "
        "folder is laid out as IMAGE_FOLDER/<class>/<image>) into WebDataset tar shards in OUT_DIR, for "
        "sequential reading at scale.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", metavar="IMAGE_FOLDER", type=Path, help="folder of images, any nesting")
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="folder for the shards and the index (created)")
    p.add_argument(
        "--shard-size",
        type=int,  # pack_shards checks it (one line, before any work)
        default=1000,
        help="images per shard (default 1000; aim for shards of 100 MB to 1 GB, and at least as many shards as "
        "processes x loader workers)",
    )
    p.add_argument("--prefix", default="train", help="shard file name prefix (default train)")
    p.add_argument("--overwrite", action="store_true", help="replace shards already written with this prefix")
    p.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        help="seed of the random packing order (default 0); shards packed in path order would hold one class "
        "each, and training only shuffles within a buffer",
    )
    p.add_argument("--no-shuffle", action="store_true", help="pack in sorted path order instead (not for training)")
    add_strict(p)
    p.set_defaults(func=with_bad_inputs(run))


def run(args: argparse.Namespace) -> int:
    from vitssl.data.bad_inputs import note
    from vitssl.data.shards.writer import pack_shards

    result = pack_shards(
        args.folder,
        args.out_dir,
        shard_size=args.shard_size,
        prefix=args.prefix,
        overwrite=args.overwrite,
        shuffle=not args.no_shuffle,
        seed=args.seed,
        on_bad_image=bad_image_policy(args),
    )
    labels = f"{len(result.classes)} classes" if result.classes else "unlabelled"
    print(
        f"wrote {result.num_samples} images ({labels}) in {len(result.shards)} shard(s) to {result.index.parent}; "
        f"index {result.index}"
    )
    note(result.bad_paths)
    return 0
