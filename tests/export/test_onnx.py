"""ONNX round trips (onnxruntime vs PyTorch, <= 1e-4) for ViT (through the CLI, with tokens, dynamic batch and
image size) and SiT (its pooled feature is the contrastive token). Swin: ``test_onnx_swin.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitssl.cli import main
from vitssl.export import export_run

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _compare(session, backbone, shape, tokens: bool) -> float:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    got = session.run(None, {"pixel_values": x.numpy()})
    with torch.no_grad():
        ref = backbone(x)
    diffs = [np.abs(got[0] - ref.pooled.numpy()).max()]
    if tokens:
        assert got[1].shape == tuple(ref.tokens.shape)
        diffs.append(np.abs(got[1] - ref.tokens.numpy()).max())
    return float(max(diffs))


def test_vit_onnx_through_the_cli_with_dynamic_batch_and_size(runs, reference, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main(["export", str(runs["vit"]), "--format", "onnx", "--out", str(out), "--tokens"]) == 0
    assert "check onnx pooled" in capsys.readouterr().out
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["pooled", "tokens"]
    _, backbone = reference("vit")
    for shape in [(1, 3, 16, 16), (5, 3, 16, 16), (2, 3, 24, 32)]:  # batch and image size both vary
        diff = _compare(session, backbone, shape, tokens=True)
        print(f"onnx vit {shape}: max abs diff {diff:.2e}")
        assert diff <= 1e-4
    assert "onnxruntime" in (out / "README.md").read_text()


def test_sit_onnx_pooled_is_the_contrastive_token(runs, reference, tmp_path):
    result = export_run(runs["sit"], "onnx", tmp_path / "onnx")
    session = ort.InferenceSession(str(result.files[0]), providers=["CPUExecutionProvider"])
    _, backbone = reference("sit")
    assert backbone.feature == "contrastive"
    for shape in [(3, 3, 16, 16), (1, 3, 20, 16)]:
        diff = _compare(session, backbone, shape, tokens=False)
        print(f"onnx sit {shape}: max abs diff {diff:.2e}")
        assert diff <= 1e-4
