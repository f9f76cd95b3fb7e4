"""The Python API: ``vitssl.pretrain(config, **overrides)`` trains and returns the run folder."""

import subprocess
import sys

import pytest
import yaml

import vitssl
from conftest import TINY_OVERRIDES
from vitssl.api import pretrain
from vitssl.checkpoints import load_checkpoint
from vitssl.config import load_config
from vitssl.config.loading import nest_values
from vitssl.errors import VitsslError


def _tiny_yaml(tmp_path, root):
    values = {}
    for item in [f"data.train={root}", *TINY_OVERRIDES, "optim.epochs=1", "optim.warmup_epochs=0"]:
        key, raw = item.split("=", 1)
        section, name = key.split(".")
        values.setdefault(section, {})[name] = yaml.safe_load(raw)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_pretrain_from_a_preset_with_dotted_and_nested_overrides(tiny_image_folder, tmp_path):
    out = tmp_path / "run"
    run_dir = vitssl.pretrain(
        _tiny_yaml(tmp_path, tiny_image_folder), **{"train.out_dir": str(out)}, optim={"lr": 1e-3, "epochs": 0.5}
    )
    assert run_dir == out
    saved = load_checkpoint(out)
    assert saved["step"] == 3  # 24 images / 4 per step * half an epoch
    assert saved["config"]["optim"]["lr"] == 1e-3 and saved["config"]["data"]["batch_size"] == 4


def test_pretrain_from_a_loaded_config_applies_the_overrides(tiny_image_folder, tmp_path):
    cfg = load_config(_tiny_yaml(tmp_path, tiny_image_folder), [f"train.out_dir={tmp_path / 'a'}"])
    run_dir = pretrain(cfg, **{"train.out_dir": str(tmp_path / "b"), "optim.epochs": 0.25})
    assert run_dir == tmp_path / "b" and not (tmp_path / "a").exists()
    assert load_checkpoint(run_dir)["step"] == 2  # a quarter of 6 steps per epoch, rounded up


def test_a_misspelt_override_is_one_line(tiny_image_folder, tmp_path):
    with pytest.raises(VitsslError, match="optim.lrr") as err:
        pretrain(_tiny_yaml(tmp_path, tiny_image_folder), **{"optim.lrr": 1e-3})
    assert "\n" not in str(err.value)


def test_nest_values_merges_dotted_and_nested_keys():
    assert nest_values({"optim.lr": 0.1, "optim": {"epochs": 2}, "data.batch_size": 8}) == {
        "optim": {"lr": 0.1, "epochs": 2},
        "data": {"batch_size": 8},
    }
    with pytest.raises(VitsslError, match="not a section"):
        nest_values({"method": "dino", "method.x": 1})


def test_import_vitssl_leaves_the_training_stack_unimported():
    """``vitssl.pretrain`` is resolved on first use, so a plain import stays light and cycle-free."""
    code = "import sys, vitssl; print('vitssl.api' in sys.modules, vitssl.pretrain.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "vitssl.api"]
