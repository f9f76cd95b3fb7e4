"""``vitssl export``: a run's weights as safetensors, a timm folder, a Hugging Face folder or ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitssl.commands._shared import add_checkpoint

EPILOG = """\
examples:
  vitssl export runs/demo --format timm --out exports/demo-timm
  vitssl export runs/demo --format hf --out exports/demo-hf          # needs pip install 'vitssl[hf]'
  vitssl export runs/demo --format onnx --out exports/demo-onnx --tokens   # needs 'vitssl[onnx]'
  vitssl export runs/sit/last.pt --format safetensors --which student --with-heads --out exports/sit
  vitssl export runs/demo --format dino --out exports/demo-dino    # DINO's own layout: <name>.pth + <name>.json

Every export is loaded back and compared with the training backbone on random input before the command
returns; the differences are printed and written into the folder's README.md (the model card).
See docs/export.md for how to load each format."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a run's backbone (safetensors, timm, Hugging Face, ONNX) with a model card",
        description="Write the teacher (or student) backbone of a run in a format other tools load: safetensors "
        "under vitssl's names, a timm hub folder (timm.create_model), a Hugging Face folder "
        "(transformers.AutoModel, as TimmWrapperModel) or ONNX (dynamic batch); checked numerically.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_checkpoint(p)
    p.add_argument(
        "--format",
        required=True,
        help="safetensors, timm, hf, onnx, or the authors' layouts: dino (DINO's VisionTransformer, ViT runs), sit",
    )
    p.add_argument("--out", type=Path, required=True, help="folder to write the export and its README.md into")
    p.add_argument(
        "--which",
        choices=("teacher", "student"),
        help="network to export (default: the teacher where the method has one, else the student)",
    )
    p.add_argument(
        "--with-heads",
        action="store_true",
        help="also export the method's heads (inside the safetensors file, else as heads.safetensors)",
    )
    p.add_argument("--tokens", action="store_true", help="onnx: output the patch tokens as well as the pooled feature")
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--dynamic-size",
        dest="dynamic_size",
        action="store_const",
        const=True,
        help="onnx: dynamic image height/width (the default for ViT; slow to export for Swin)",
    )
    size.add_argument(
        "--static-size",
        dest="dynamic_size",
        action="store_const",
        const=False,
        help="onnx: fix the image size to the run's eval size (the default for Swin)",
    )
    p.set_defaults(func=run, dynamic_size=None)


def run(args: argparse.Namespace) -> int:
    from vitssl.errors import VitsslError
    from vitssl.export import export_run

    if getattr(args, "init", None):
        raise VitsslError(
            "vitssl export writes the run's own weights; --init is for the evaluation commands (to export other "
            "weights, pretrain or evaluate with model.init_from / --init first)"
        )

    result = export_run(
        args.source,
        args.format,
        args.out,
        which=args.which,
        with_heads=args.with_heads,
        tokens=args.tokens,
        dynamic_size=args.dynamic_size,
    )
    for name, diff in result.checks.items():
        print(f"check {name}: max abs diff {diff:.2e}")
    print(f"wrote {args.format} export of the {result.which} to {result.out} ({len(result.files)} files)")
    return 0
