"""``vitssl presets``: the presets shipped with vitssl, one line each, usable by name in ``vitssl pretrain``."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  vitssl presets
  vitssl pretrain demo                                  # a preset by name, from any folder
  vitssl pretrain dino/vit_small_imagenet data.train=/data/imagenet/train
  vitssl presets --paths                                # where each file lives (copy one to edit it)"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "presets",
        help="list the shipped presets (what each reproduces, or its measured CPU result)",
        description="The YAML presets shipped inside the package. Pass a name to `vitssl pretrain` (a file path "
        "works too); the authors' recipes say which paper run they reproduce, vitssl's own CPU recipes what they "
        "measured.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--paths", action="store_true", help="print each preset's file path instead of its summary")
    p.set_defaults(func=run)


def format_presets(paths: bool = False) -> str:
    """The preset table: ``name  what it measured`` (vitssl's own CPU recipes) or ``name  what it reproduces``
    (the authors' recipes); ``name  path`` with ``paths``."""
    from vitssl.config.presets import list_presets

    presets = list_presets()
    width = max(len(p.name) for p in presets)
    rows = []
    for p in presets:
        text = str(p.path) if paths else (f"measured: {p.measured}" if p.measured else p.summary)
        rows.append(f"{p.name:<{width}}  {text}")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    print(format_presets(paths=args.paths))
    return 0
