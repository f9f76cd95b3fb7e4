"""The ONNX export: the backbone's pooled feature (and optionally its patch tokens) as ``model.onnx``.

Exporter: torch's ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``, the default since
torch 2.9; it needs ``onnxscript``). It is the one that keeps the image size dynamic for a ViT: the legacy
TorchScript tracer bakes the interpolated position embedding's size in, so an export traced at 32 px fails at
48 px. Batch is always dynamic. Swin exports at the run's image size by default: its attention masks depend on
the feature-map size, and tracing them symbolically takes minutes (``dynamic_size=True`` forces it).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from vitssl.errors import VitsslError
from vitssl.export.source import ExportSource, random_images
from vitssl.extras import require
from vitssl.models.backbones import Backbone

ONNX_FILE = "model.onnx"
ONNX_TOLERANCE = 1e-4
INPUT_NAME = "pixel_values"
_LARGE_BYTES = 1_800_000_000  # protobuf files stop at 2 GB: larger models keep their weights in a side file


class _Pooled(nn.Module):
    """The backbone with tensor outputs only: pooled, or (pooled, tokens)."""

    def __init__(self, backbone: Backbone, tokens: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokens = tokens

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        features = self.backbone(images)
        return (features.pooled, features.tokens) if self.tokens else features.pooled


def require_onnx() -> None:
    """Raise a one-line error naming the extra to install when onnx, onnxscript or onnxruntime is missing."""
    for name in ("onnx", "onnxscript", "onnxruntime"):
        require(name, "export", "--format onnx")


def wants_dynamic_size(backbone: Backbone, dynamic_size: bool | None) -> bool:
    """None (auto): dynamic image size for a ViT, fixed for a Swin."""
    return (not backbone.is_swin) if dynamic_size is None else dynamic_size


def export_onnx(source: ExportSource, out: Path, tokens: bool = False, dynamic_size: bool | None = None) -> Path:
    """Write ``out/model.onnx``: input ``pixel_values`` (B, 3, H, W) normalised like the run's eval transform,
    output ``pooled`` (B, D) and, with ``tokens``, ``tokens`` (B, N, D)."""
    out.mkdir(parents=True, exist_ok=True)
    module = _Pooled(source.backbone, tokens).eval()
    batch = torch.export.Dim.DYNAMIC
    dims = {0: batch}
    if wants_dynamic_size(source.backbone, dynamic_size):
        dims.update({2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC})
    large = sum(p.numel() * p.element_size() for p in module.parameters()) > _LARGE_BYTES
    path = out / ONNX_FILE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter is not the user's business
        try:
            torch.onnx.export(
                module,
                (random_images(source.image_size),),
                str(path),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=["pooled", "tokens"] if tokens else ["pooled"],
                dynamic_shapes={"images": dims},
                external_data=large,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many types; the first line says what failed
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VitsslError(f"torch.onnx.export failed ({first[:300]}); use --format timm or safetensors") from None
    return path


def onnx_files(path: Path) -> list[Path]:
    """The ONNX file and, for a model over 2 GB, its external weights file next to it."""
    return [p for p in (path, path.with_name(path.name + ".data")) if p.is_file()]


def check_onnx(source: ExportSource, path: Path, tokens: bool = False, dynamic_size: bool | None = None) -> dict:
    """Run the file with onnxruntime (CPU) and compare with PyTorch: batch 2 and 3 at the run's size, and for a
    dynamic-size export also a non-square size.

    Raises:
        VitsslError: An output differs by more than :data:`ONNX_TOLERANCE`.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    size = source.image_size
    shapes = [(2, size, size), (3, size, size)]
    if wants_dynamic_size(source.backbone, dynamic_size):
        stride = source.backbone.stride
        shapes.append((1, size + 2 * stride, size + stride))
    diffs: dict[str, float] = {}
    for batch, height, width in shapes:
        x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(batch))
        got = session.run(None, {INPUT_NAME: x.numpy()})
        with torch.no_grad():
            ref = source.backbone(x)
        refs = [ref.pooled, ref.tokens] if tokens else [ref.pooled]
        for name, a, b in zip(("pooled", "tokens")[: len(refs)], got, refs, strict=True):
            if tuple(a.shape) != tuple(b.shape):
                raise VitsslError(f"onnx {name} has shape {a.shape}, PyTorch {tuple(b.shape)}; please report this")
            diffs[f"onnx {name} {batch}x{height}x{width}"] = float(abs(torch.from_numpy(a) - b).max())
    worst = max(diffs.values())
    if worst > ONNX_TOLERANCE:
        raise VitsslError(f"the ONNX export differs from PyTorch by {worst:.2e} (> {ONNX_TOLERANCE}); please report")
    return diffs
