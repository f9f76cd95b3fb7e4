"""The Python API: ``vitssl.pretrain(config, **overrides)`` trains and returns the run folder."""

import subprocess
import sys

import pytest
import torch
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


class _Noise(torch.utils.data.Dataset):
    """A user's own dataset: (C, H, W) tensors in [0, 1] with a label, as torchvision datasets return them."""

    def __init__(self, count: int) -> None:
        self.images = torch.rand(count, 3, 20, 20, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], index % 2


def test_pretrain_on_a_users_own_dataset_resumes_exactly(tmp_path):
    settings = {"train.out_dir": str(tmp_path / "run"), "optim.epochs": 2, "optim.warmup_epochs": 0}
    tiny = [o for o in TINY_OVERRIDES if not o.startswith("data.train")]
    cfg = load_config(None, tiny)
    straight = load_checkpoint(vitssl.pretrain(cfg, dataset=_Noise(12), **settings))
    assert straight["step"] == 6  # 12 images / 4 per step * 2 epochs

    from vitssl.api import train, with_values

    halted = with_values(cfg, {**settings, "train.out_dir": str(tmp_path / "halted")})
    assert train(halted, stop_at_step=2, dataset=_Noise(12)).steps == 2
    resumed = load_checkpoint(vitssl.pretrain(halted, dataset=_Noise(12)))
    assert all(torch.equal(straight["method"][k], resumed["method"][k]) for k in straight["method"])


def test_a_dataset_of_other_things_is_one_line(tmp_path):
    cfg = load_config(None, [o for o in TINY_OVERRIDES if not o.startswith("data.train")])
    with pytest.raises(VitsslError, match=r"^item [0-7] of the dataset is a str; return a PIL image"):
        vitssl.pretrain(cfg, dataset=["not an image"] * 8, **{"train.out_dir": str(tmp_path / "run")})


def test_knn_of_a_run_from_python(tiny_image_folder, tmp_path):
    run = vitssl.pretrain(_tiny_yaml(tmp_path, tiny_image_folder), **{"train.out_dir": str(tmp_path / "run")})
    scores = vitssl.knn(run, train=str(tiny_image_folder), val=str(tiny_image_folder), k=(1, 3))
    assert set(scores) == {1, 3}
    assert scores[1]["top1"] == pytest.approx(100.0)  # the memory holds every query: its own image is nearest
