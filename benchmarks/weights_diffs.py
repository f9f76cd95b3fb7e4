"""Measured max |diff| of the weights that come in and go out (docs/export.md, "Weights in and out").

Offline: every source is built from random tensors in its publisher's layout, loaded with ``vitssl.load_backbone``
and compared with an implementation that does not share vitssl's loading code. Run from the repository root:

    python benchmarks/weights_diffs.py
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import timm
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from common import recorded  # noqa: E402

import vitssl  # noqa: E402
from dino_reference import RefViT, random_state  # noqa: E402
from vitssl.models.backbones import build_backbone  # noqa: E402


def diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def images(h: int, w: int) -> torch.Tensor:
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))


def main() -> None:
    rows: list[tuple[str, str, str]] = []
    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    with torch.no_grad():
        ref = RefViT(depth=12).eval()  # ViT-S/16 as released
        ref.load_state_dict(random_state(ref, scale=0.05), strict=True)
        torch.save(ref.state_dict(), tmp / "dino_deitsmall16_pretrain.pth")
        backbone = vitssl.load_backbone(tmp / "dino_deitsmall16_pretrain.pth")
        for h, w in ((224, 224), (480, 640), (96, 96)):
            x = images(h, w)
            rows.append(
                (
                    "DINO release (ViT-S/16, random)",
                    f"pooled vs reference ViT, {h}x{w} (max abs feature {float(ref(x).abs().max()):.1f})",
                    f"{diff(backbone.pooled(x), ref(x)):.2e}",
                )
            )
        backbone.pos_interpolation = "timm"
        x = images(480, 640)
        rows.append(
            (
                "same, with timm's interpolation",
                "pooled vs reference ViT, 480x640",
                f"{diff(backbone.pooled(x), ref(x)):.2e}",
            )
        )

        model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).eval()
        torch.save(model.state_dict(), tmp / "timm.pth")
        got = vitssl.load_backbone(f"timm:vit_small_patch16_224.augreg_in21k@{tmp / 'timm.pth'}")
        x = images(224, 224)
        rows.append(
            (
                "timm:NAME@FILE",
                "pooled vs timm forward_features[:, 0], 224",
                f"{diff(got.pooled(x), model.forward_features(x)[:, 0]):.2e}",
            )
        )

        from transformers import ViTConfig, ViTModel

        hf = ViTModel(
            ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536)
        ).eval()
        hf.save_pretrained(tmp / "hf")
        got = vitssl.load_backbone(f"hf:{tmp / 'hf'}")
        rows.append(
            (
                "hf: ViTModel folder (ViT-S/16 shape)",
                "pooled vs last_hidden_state[:, 0], 224",
                f"{diff(got.pooled(x), hf(pixel_values=x).last_hidden_state[:, 0]):.2e}",
            )
        )

        swin = build_backbone("swin_tiny").eval()
        official = {
            re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k): v
            for k, v in swin.model.state_dict().items()
        }
        torch.save({"teacher": {f"backbone.{k}": v for k, v in official.items()}}, tmp / "esvit.pth")
        got = vitssl.load_backbone(tmp / "esvit.pth")
        rows.append(
            (
                "EsViT Swin-T checkpoint (Swin paper layout)",
                "pooled vs the timm Swin it came from, 224",
                f"{diff(got.pooled(x), swin.pooled(x)):.2e}",
            )
        )
    table = "| source | what is compared | max abs diff |\n|---|---|---|\n"
    table += "".join("| " + " | ".join(row) + " |\n" for row in rows)
    print(table, end="")
    out = REPO / "benchmarks" / "results" / "weights_diffs.md"
    header = f"# Weights in and out: measured differences\n\n`{recorded([sys.executable, *sys.argv])}`\n\n"
    out.write_text(header + table)
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
