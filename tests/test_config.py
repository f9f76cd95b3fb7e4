import pytest
import yaml

from vitssl.config import PretrainConfig, describe, load_config, parse_overrides, save_config
from vitssl.errors import VitsslError


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\noptim:\n  lr: 0.001\ncrops:\n  local_count: 2\n")
    cfg = load_config(path, ["optim.lr=2e-3", "data.val=null", "crops.global_scale=[0.3, 1]", "train.seed=7"])
    assert cfg.name == "x" and cfg.optim.lr == 2e-3 and cfg.crops.local_count == 2
    assert cfg.crops.global_scale == [0.3, 1.0] and cfg.train.seed == 7 and cfg.data.val is None
    assert cfg.dino.out_dim == 65536  # untouched default


def test_int_is_accepted_for_float():
    cfg = load_config(None, ["optim.lr=1", "optim.epochs=3"])
    assert isinstance(cfg.optim.lr, float) and cfg.optim.epochs == 3.0


def test_unknown_key_names_closest_valid_keys():
    with pytest.raises(VitsslError, match=r"unknown config key 'optim\.learning_rat'.*optim\.") as err:
        load_config(None, ["optim.learning_rat=1e-3"])
    assert "\n" not in str(err.value)
    with pytest.raises(VitsslError, match="did you mean dino.momentum_teacher"):
        load_config(None, ["dino.teacher_momentum=0.99"])
    with pytest.raises(VitsslError, match="unknown config key 'optimizer'"):
        load_config(None, ["optimizer.lr=1"])


def test_wrong_type_names_key_expected_type_and_value():
    with pytest.raises(VitsslError, match=r"'data\.batch_size' expects int, got 'big'"):
        load_config(None, ["data.batch_size=big"])
    with pytest.raises(VitsslError, match=r"'optim\.lr' expects float, got True"):
        load_config(None, ["optim.lr=true"])
    with pytest.raises(VitsslError, match=r"'train\.precision' expects one of 'auto', 'fp32'"):
        load_config(None, ["train.precision=fp8"])


def test_range_validation():
    with pytest.raises(VitsslError, match="not a multiple of model.patch_size"):
        load_config(None, ["model.patch_size=4", "crops.global_size=30"])
    with pytest.raises(VitsslError, match="crops.local_scale"):
        load_config(None, ["crops.local_scale=[0.5, 0.1]"])


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(VitsslError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(VitsslError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(VitsslError, match="key.sub=value"):
        parse_overrides(["optim.lr"])


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["optim.lr=3e-4", "name=rt"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["optim"]["lr"] == 3e-4


def test_every_key_has_help():
    rows = describe()
    assert len(rows) > 40
    assert all(help_text for _, _, help_text in rows), [k for k, _, h in rows if not h]
    assert PretrainConfig().run_dir.name == "dino"


def test_every_preset_loads():
    from pathlib import Path

    presets = sorted(Path(__file__).resolve().parents[1].glob("configs/**/*.yaml"))
    assert presets
    for preset in presets:
        load_config(preset)
