"""``vitssl export`` user mistakes are one line (exit 2), before any heavy work; teacher/student choice."""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import load_file

from vitssl.cli import main


def _error(capsys, args: list[str]) -> str:
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vitssl: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_input_is_one_line(runs, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert "does not exist" in _error(capsys, [str(tmp_path / "no-run"), "--format", "timm", "--out", out])
    assert "unknown export format 'tflite'" in _error(capsys, [str(runs["vit"]), "--format", "tflite", "--out", out])
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert "is a file" in _error(capsys, [str(runs["vit"]), "--format", "timm", "--out", str(a_file)])
    assert "cannot write" in _error(capsys, [str(runs["vit"]), "--format", "timm", "--out", str(a_file / "sub")])
    sit_teacher = [str(runs["sit"]), "--format", "timm", "--out", out, "--which", "teacher"]
    assert "has no teacher" in _error(capsys, sit_teacher)


def test_missing_optional_packages_name_the_extra(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails as if not installed
    assert "vitssl[export]" in _error(capsys, [str(runs["vit"]), "--format", "hf", "--out", str(tmp_path)])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert "vitssl[export]" in _error(capsys, [str(runs["vit"]), "--format", "onnx", "--out", str(tmp_path)])


@pytest.mark.parametrize("which", ["teacher", "student", None])
def test_teacher_by_default_and_student_on_request(which, runs, tmp_path, capsys):
    args = [str(runs["vit"]), "--format", "safetensors", "--out", str(tmp_path)]
    assert main(["export", *args, *(["--which", which] if which else [])]) == 0
    assert "check safetensors" in capsys.readouterr().out
    saved = load_file(str(tmp_path / "model.safetensors"))
    ckpt = torch.load(runs["vit"] / "last.pt", weights_only=True)
    network = "student" if which == "student" else "teacher"
    expected = ckpt["method"][f"{network}.backbone.model.cls_token"]
    assert torch.equal(saved["backbone.model.cls_token"], expected)
    other = ckpt["method"][f"{'teacher' if network == 'student' else 'student'}.backbone.model.cls_token"]
    assert not torch.equal(expected, other)  # the fixture perturbed the student: the choice is visible


def test_an_export_timm_cannot_reproduce_is_refused_in_one_line(runs, tmp_path, monkeypatch, capsys):
    import vitssl.export.timm_folder as timm_folder
    from vitssl.export.timm_spec import TimmSpec

    real = timm_folder.timm_spec

    def wrong_size(cfg) -> TimmSpec:  # timm then resamples the position embedding: same keys, other numbers
        spec = real(cfg)
        return TimmSpec(spec.architecture, {**spec.model_args, "img_size": 32}, spec.is_swin)

    monkeypatch.setattr(timm_folder, "timm_spec", wrong_size)
    err = _error(capsys, [str(runs["vit"]), "--format", "timm", "--out", str(tmp_path)])
    assert "differs from the training backbone" in err and "cannot be expressed exactly" in err
