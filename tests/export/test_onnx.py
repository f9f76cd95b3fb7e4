"""ONNX round trip (onnxruntime vs PyTorch, <= 1e-4) of a ViT run through the CLI, with tokens, dynamic batch
and dynamic image size. SiT and Swin: ``test_onnx_sit.py``, ``test_onnx_swin.py`` (one export per file: torch's
exporter takes 10-20 s a model on a busy CPU)."""

from __future__ import annotations

import pytest

from vitssl.cli import main

from .conftest import onnx_compare

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def test_vit_onnx_through_the_cli_with_dynamic_batch_and_size(runs, reference, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main(["export", str(runs["vit"]), "--format", "onnx", "--out", str(out), "--tokens"]) == 0
    assert "check onnx pooled" in capsys.readouterr().out
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["pooled", "tokens"]
    _, backbone = reference("vit")
    for shape in [(1, 3, 16, 16), (5, 3, 16, 16), (2, 3, 24, 32)]:  # batch and image size both vary
        diff = onnx_compare(session, backbone, shape, tokens=True)
        print(f"onnx vit {shape}: max abs diff {diff:.2e}")
        assert diff <= 1e-4
    assert "onnxruntime" in (out / "README.md").read_text()
