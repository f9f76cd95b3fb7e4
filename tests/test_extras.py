"""A missing optional package is one line naming the extra that installs it, from the command that needs it.

``sys.modules[name] = None`` is Python's own way to make an import fail (the import system raises ImportError for
it), so the command runs its real import path without the package.
"""

from __future__ import annotations

import sys

import pytest
from PIL import Image

from vitssl.cli import main
from vitssl.errors import VitsslError
from vitssl.extras import EXTRAS, require


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "webdataset", None)
    with pytest.raises(
        VitsslError, match=r'^packing shards needs webdataset; install it with pip install "vitssl\[shards\]"$'
    ):
        require("webdataset", "shards", "packing shards")


def test_every_extra_is_declared_in_pyproject():
    from pathlib import Path

    import tomllib

    declared = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    extras = declared["project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(extras)
    core = " ".join(declared["project"]["dependencies"])
    for modules in EXTRAS.values():
        for module in modules:
            assert module not in core, f"{module} is optional and must not be a core dependency"


def test_shards_without_webdataset_is_one_line(tmp_path, monkeypatch, capsys):
    src = tmp_path / "images" / "a"
    src.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(src / "x.png")
    monkeypatch.setitem(sys.modules, "webdataset", None)
    assert main(["shards", str(tmp_path / "images"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == 'vitssl: error: packing shards needs webdataset; install it with pip install "vitssl[shards]"'


def test_export_onnx_without_onnxruntime_is_one_line(monkeypatch):
    from vitssl.export.onnx_file import require_onnx

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(
        VitsslError, match=r'--format onnx needs onnxruntime; install it with pip install "vitssl\[export\]"'
    ):
        require_onnx()
