"""--init evaluates foreign backbone weights with a run's architecture: another run's weights give that run's
k-NN exactly; weights of another shape are refused in one line."""

from __future__ import annotations

import json

from conftest import TINY_OVERRIDES
from vitssl.api import build_trainer
from vitssl.cli import main
from vitssl.config import load_config


def _run(folder, out, *extra):
    cfg = load_config(
        None, [f"data.train={folder}", *TINY_OVERRIDES, "optim.epochs=0.5", f"train.out_dir={out}", *extra]
    )
    build_trainer(cfg).fit()
    return out


def test_knn_with_init_equals_the_other_runs_knn(tiny_image_folder, tmp_path, capsys):
    a = _run(tiny_image_folder, tmp_path / "a")
    b = _run(tiny_image_folder, tmp_path / "b", "train.seed=3")
    common = ["--train", str(tiny_image_folder), "--val", str(tiny_image_folder), "--k", "5", "--num-workers", "0"]
    assert main(["knn", str(a), *common, "--out", str(tmp_path / "a.json")]) == 0
    assert main(["knn", str(b), *common, "--init", str(a), "--out", str(tmp_path / "b_from_a.json")]) == 0
    assert main(["knn", str(b), *common, "--out", str(tmp_path / "b.json")]) == 0
    own_a = json.loads((tmp_path / "a.json").read_text())["pretrained"]
    from_a = json.loads((tmp_path / "b_from_a.json").read_text())["pretrained"]
    assert own_a == from_a
    assert "--init: loaded" in capsys.readouterr().err


def test_init_of_another_shape_is_one_line(tiny_image_folder, tmp_path, capsys):
    a = _run(tiny_image_folder, tmp_path / "a")
    b = _run(tiny_image_folder, tmp_path / "b", "model.patch_size=8")
    args = ["knn", str(b), "--train", str(tiny_image_folder), "--val", str(tiny_image_folder), "--k", "5"]
    assert main([*args, "--init", str(a)]) == 2
    err = capsys.readouterr().err
    assert "another shape" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
