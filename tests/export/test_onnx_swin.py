"""ONNX round trip of a Swin (onnxruntime vs PyTorch, <= 1e-4), dynamic batch at the run's image size.

Exporting a Swin with torch's exporter is slow (tens of seconds for swin_mini_32 on a busy CPU), so this test
exports a two-stage, one-block-per-stage Swin with the small-image preset's patch 2 and window 4, placed in the
Swin run's export source: the exporter code path is the same as for a run's own backbone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vitssl.export.onnx_file import check_onnx, export_onnx
from vitssl.export.source import ExportSource
from vitssl.models.backbones import build_backbone

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def test_swin_onnx_with_dynamic_batch(runs, reference, tmp_path):
    cfg, _ = reference("swin")
    torch.manual_seed(0)
    swin = build_backbone("swin_mini_32", img_size=32, depths=(1, 1), num_heads=(2, 4)).eval()
    source = ExportSource(cfg, runs["swin"], runs["swin"], "teacher", nn.ModuleDict({"backbone": swin}), swin)
    path = export_onnx(source, tmp_path)
    checks = check_onnx(source, path)
    assert set(checks) == {"onnx pooled 2x32x32", "onnx pooled 3x32x32"}  # Swin: fixed size by default
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = swin(x).pooled.numpy()
    diff = float(np.abs(session.run(None, {"pixel_values": x.numpy()})[0] - ref).max())
    print(f"onnx swin batch 4: max abs diff {diff:.2e}; export checks {checks}")
    assert diff <= 1e-4
