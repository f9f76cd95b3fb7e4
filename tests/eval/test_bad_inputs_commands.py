"""Every evaluation command on data holding an empty .jpg: by default it skips the file, exits 0 and prints one
summary line (no traceback); with --strict it exits 2 with one line naming the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitssl.cli import main


def _image(path: Path, seed: int, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory) -> Path:
    """root/{a,b}/ with 4 readable images each and an empty a/x.jpg."""
    root = tmp_path_factory.mktemp("bad_inputs") / "bad"
    for cls in ("a", "b"):
        for i in range(4):
            _image(root / cls / f"{i}.png", seed=i + (10 if cls == "b" else 0))
    (root / "a" / "x.jpg").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def bad_pairs(tmp_path_factory) -> Path:
    """A segmentation folder (images/ + masks/) of 3 pairs, one of whose images is an empty .jpg."""
    root = tmp_path_factory.mktemp("bad_pairs")
    for i in range(3):
        _image(root / "images" / f"{i}.png", seed=i)
        (root / "masks").mkdir(exist_ok=True)
        Image.fromarray((np.arange(256).reshape(16, 16) % 2).astype(np.uint8)).save(root / "masks" / f"{i}.png")
    (root / "images" / "3.jpg").write_bytes(b"")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "masks" / "3.png")
    return root


def _commands(run: Path, bad: Path, pairs: Path, out: Path) -> dict[str, list[str]]:
    sets = ["--train", str(bad), "--val", str(bad), "--num-workers", "0"]
    return {
        "embed": ["embed", str(run), str(bad), "--out", str(out / "e.npy"), "--num-workers", "0"],
        "knn": ["knn", str(run), *sets, "--k", "2", "--out", str(out / "knn.json")],
        "linear": ["linear", str(run), *sets, "--epochs", "1", "--fast"],
        "attention": ["attention", str(run), str(bad / "a" / "x.jpg"), str(bad / "a" / "0.png"), "--out", str(out)],
        "pca": ["pca", str(run), str(bad / "a" / "x.jpg"), str(bad / "a" / "0.png"), "--out", str(out / "p.png")],
        "segment": ["segment", str(run), "--train", str(pairs), "--val", str(pairs), "--epochs", "1"],
        "shards": ["shards", str(bad), str(out / "shards")],
    }


@pytest.mark.parametrize("command", ["embed", "knn", "linear", "attention", "pca", "segment", "shards"])
def test_default_skips_with_one_summary_line_and_strict_stops(
    command: str, tiny_run: Path, bad_folder: Path, bad_pairs: Path, tmp_path: Path, capsys
):
    args = _commands(tiny_run, bad_folder, bad_pairs, tmp_path)[command]
    assert main(args) == 0
    err = capsys.readouterr().err
    summary = [line for line in err.splitlines() if line.startswith("vitssl: skipped")]
    assert len(summary) == 1 and "Traceback" not in err, err
    assert "x.jpg (empty file)" in summary[0] or "3.jpg (empty file)" in summary[0]
    assert summary[0].startswith("vitssl: skipped 1 unreadable image (first: ")
    assert summary[0].endswith("; pass --strict to stop at the first one")
    if command == "shards":
        args[-1] += "-strict"
    assert main([*args, "--strict"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vitssl")]
    assert len(lines) == 1 and lines[0].startswith("vitssl: error: ") and ".jpg" in lines[0], lines


def test_embed_leaves_the_unreadable_image_out_of_rows_and_index(tiny_run: Path, bad_folder: Path, tmp_path: Path):
    out = tmp_path / "e.npy"
    assert main(["embed", str(tiny_run), str(bad_folder), "--out", str(out), "--num-workers", "2"]) == 0
    index = json.loads(out.with_suffix(".json").read_text())
    assert index["count"] == 8 and "a/x.jpg" not in index["paths"] and np.load(out).shape[0] == 8


@pytest.mark.slow
def test_embed_in_a_subprocess_prints_no_traceback(tiny_run: Path, bad_folder: Path, tmp_path: Path):
    """The issue's check, as a user runs it: ``vitssl embed`` on a folder with an empty .jpg."""
    args = [sys.executable, "-m", "vitssl", "embed", str(tiny_run), str(bad_folder), "--out", str(tmp_path / "e")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert f"{bad_folder}/a/x.jpg (empty file)" in done.stderr


@pytest.mark.slow
def test_finetune_skips_the_unreadable_image(tiny_run: Path, bad_folder: Path, capsys):
    args = ["finetune", str(tiny_run), "--train", str(bad_folder), "--val", str(bad_folder), "--epochs", "1"]
    assert main([*args, "--num-workers", "0", "--batch-size", "4"]) == 0
    err = capsys.readouterr().err
    assert err.count("vitssl: skipped 1 unreadable image") == 1 and "Traceback" not in err
