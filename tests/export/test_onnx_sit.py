"""ONNX round trip (onnxruntime vs PyTorch, <= 1e-4) of a SiT run: the pooled output is the contrastive token
(a timm register token), with dynamic batch and image size."""

from __future__ import annotations

import pytest

from vitssl.export import export_run

from .conftest import onnx_compare

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def test_sit_onnx_pooled_is_the_contrastive_token(runs, reference, tmp_path):
    result = export_run(runs["sit"], "onnx", tmp_path / "onnx")
    session = ort.InferenceSession(str(result.files[0]), providers=["CPUExecutionProvider"])
    _, backbone = reference("sit")
    assert backbone.feature == "contrastive"
    for shape in [(3, 3, 16, 16), (1, 3, 20, 16)]:
        diff = onnx_compare(session, backbone, shape, tokens=False)
        print(f"onnx sit {shape}: max abs diff {diff:.2e}")
        assert diff <= 1e-4
