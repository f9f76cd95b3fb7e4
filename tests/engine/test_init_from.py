"""model.init_from starts pretraining from existing backbone weights (another run, an export), checked by name
and shape."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_OVERRIDES
from vitssl.api import build_trainer
from vitssl.config import load_config
from vitssl.errors import VitsslError


def _cfg(folder, out, *extra):
    return load_config(
        None, [f"data.train={folder}", *TINY_OVERRIDES, "optim.epochs=0.34", f"train.out_dir={out}", *extra]
    )


def test_pretraining_starts_from_another_runs_backbone(tiny_image_folder, tmp_path, capsys):
    first = build_trainer(_cfg(tiny_image_folder, tmp_path / "a"))
    first.fit()
    teacher = first.method.eval_backbone().state_dict()
    second = build_trainer(_cfg(tiny_image_folder, tmp_path / "b", f"model.init_from={tmp_path / 'a'}", "train.seed=5"))
    assert "model.init_from: loaded" in capsys.readouterr().err
    for backbone in second.method.backbones():  # student and teacher both start from the run's teacher
        assert all(torch.equal(v, teacher[k]) for k, v in backbone.state_dict().items())


def test_a_backbone_of_another_shape_is_refused_in_one_line(tiny_image_folder, tmp_path):
    build_trainer(_cfg(tiny_image_folder, tmp_path / "a")).fit()
    with pytest.raises(VitsslError) as err:
        build_trainer(
            _cfg(tiny_image_folder, tmp_path / "b", f"model.init_from={tmp_path / 'a'}", "model.patch_size=8")
        )
    assert "another shape" in str(err.value) and "\n" not in str(err.value)
