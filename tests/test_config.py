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


# One out-of-range value for every numeric key of the generic sections and of dino / esvit, with the words the
# error must contain. test_every_numeric_key_has_a_bad_value_case fails when a new numeric key is missing here.
BAD_VALUES: dict[str, tuple[str, str]] = {
    "data.batch_size": ("0", "data.batch_size must be >= 1, got 0"),
    "data.num_workers": ("-1", "data.num_workers must be >= 0"),
    "data.max_images": ("0", "data.max_images must be >= 1"),
    "data.mean": ("[0.5, 0.5, 2]", r"every value of data.mean must be in \[0, 1\]"),
    "data.std": ("[0.2, 0.2, 0]", "every value of data.std must be > 0"),
    "data.repeated_augmentation": ("0", "data.repeated_augmentation must be >= 1"),
    "data.eval_size": ("0", "data.eval_size must be >= 1"),
    "data.eval_resize": ("-1", "data.eval_resize must be >= 1"),
    "crops.global_size": ("0", "crops.global_size must be >= 1"),
    "crops.global_scale": ("[0, 1]", r"every value of crops.global_scale must be in \(0, 1\]"),
    "crops.local_count": ("-1", "crops.local_count must be >= 0"),
    "crops.local_size": ("0", "crops.local_size must be >= 1"),
    "crops.local_scale": ("[0.1, 1.5]", r"every value of crops.local_scale must be in \(0, 1\]"),
    "crops.jitter_p": ("1.5", r"crops.jitter_p must be in \[0, 1\]"),
    "crops.brightness": ("-0.1", "crops.brightness must be >= 0"),
    "crops.contrast": ("-1", "crops.contrast must be >= 0"),
    "crops.saturation": ("-1", "crops.saturation must be >= 0"),
    "crops.hue": ("0.6", r"crops.hue must be in \[0, 0.5\]"),
    "crops.grayscale_p": ("-0.1", r"crops.grayscale_p must be in \[0, 1\]"),
    "crops.blur_radius": ("[0, 1]", "every value of crops.blur_radius must be > 0"),
    "model.patch_size": ("0", "model.patch_size must be >= 1, got 0"),
    "model.img_size": ("0", "model.img_size must be >= 1"),
    "model.depth": ("0", "model.depth must be >= 1"),
    "model.window_size": ("0", "model.window_size must be >= 1"),
    "model.drop_path": ("2", r"model.drop_path must be in \[0, 1\)"),
    "optim.epochs": ("0", "optim.epochs must be > 0"),
    "optim.lr": ("0", "optim.lr must be > 0"),
    "optim.min_lr": ("-1", "optim.min_lr must be >= 0"),
    "optim.warmup_epochs": ("-1", "optim.warmup_epochs must be >= 0"),
    "optim.weight_decay": ("-1", "optim.weight_decay must be >= 0"),
    "optim.weight_decay_end": ("-1", "optim.weight_decay_end must be >= 0"),
    "optim.betas": ("[2, 3]", r"every value of optim.betas must be in \[0, 1\)"),
    "optim.clip_grad": ("-1", "optim.clip_grad must be >= 0"),
    "optim.accumulate": ("0", "optim.accumulate must be >= 1"),
    "train.seed": ("-1", r"train.seed must be in \[0, 4294967295\]"),
    "train.threads": ("0", "train.threads must be >= 1"),
    "train.budget_minutes": ("0", "train.budget_minutes must be > 0"),
    "train.log_every": ("0", "train.log_every must be >= 1"),
    "train.checkpoint_every": ("0", "train.checkpoint_every must be >= 1"),
    "train.knn_every": ("-1", "train.knn_every must be >= 0"),
    "train.knn_k": ("0", "train.knn_k must be >= 1"),
    "train.knn_max_train": ("0", "train.knn_max_train must be >= 1"),
    "train.knn_max_val": ("0", "train.knn_max_val must be >= 1"),
    "train.picture_every": ("-1", "train.picture_every must be >= 0"),
    "train.max_nonfinite": ("0", "train.max_nonfinite must be >= 1"),
    "train.keep_checkpoints": ("0", "train.keep_checkpoints must be >= 1"),
    "dino.out_dim": ("1", "dino.out_dim must be >= 2"),
    "dino.hidden_dim": ("0", "dino.hidden_dim must be >= 1"),
    "dino.bottleneck_dim": ("-1", "dino.bottleneck_dim must be >= 1"),
    "dino.student_temp": ("0", "dino.student_temp must be > 0"),
    "dino.teacher_temp": ("-0.04", "dino.teacher_temp must be > 0"),
    "dino.warmup_teacher_temp": ("0", "dino.warmup_teacher_temp must be > 0"),
    "dino.warmup_teacher_temp_epochs": ("-1", "dino.warmup_teacher_temp_epochs must be >= 0"),
    "dino.center_momentum": ("1", r"dino.center_momentum must be in \[0, 1\)"),
    "dino.momentum_teacher": ("1.5", r"dino.momentum_teacher must be in \[0, 1\]"),
    "dino.momentum_teacher_end": ("-0.1", r"dino.momentum_teacher_end must be in \[0, 1\]"),
    "dino.freeze_last_layer": ("-1", "dino.freeze_last_layer must be >= 0"),
    "dino.koleo_weight": ("-0.1", "dino.koleo_weight must be >= 0"),
    "esvit.view_weight": ("-1", "esvit.view_weight must be >= 0"),
    "esvit.region_weight": ("-0.5", "esvit.region_weight must be >= 0"),
    "esvit.region_loss_start": ("-1", "esvit.region_loss_start must be >= 0"),
}

# Inputs that once gave tracebacks or were silently accepted before the range checks.
RANGE_CHECK_CASES = [
    ("model.patch_size=-8", "model.patch_size must be >= 1"),
    ("model.depth=-1", "model.depth must be >= 1"),
    ("model.drop_path=1", r"model.drop_path must be in \[0, 1\)"),
    ("dino.hidden_dim=0", "dino.hidden_dim must be >= 1"),
    ("optim.betas=[0.9, 1.5]", "optim.betas must be in"),
    ("optim.betas=[0.9]", "optim.betas needs two values"),
    ("optim.min_lr=-1", "optim.min_lr must be >= 0"),
    ("optim.clip_grad=-1", "optim.clip_grad must be >= 0"),
    ("train.device=tpu", "train.device='tpu' is not a device"),
    ("train.device=cuda:x", "is not a device"),
    ("train.out_dir=runs/{nme}", "train.out_dir='runs/{nme}' may contain only the placeholder {name}"),
    ("train.knn_k=50", "train.knn_k=50 exceeds the k-NN memory set cap train.knn_max_train=40"),
    ("optim.epochs=.inf", "optim.epochs must be > 0, got inf"),
]

SKIPPED_SECTIONS = ("sit.",)  # methods/sit_config.py checks its own keys (and has its own tests)


def _method_overrides(key: str) -> list[str]:
    """The method whose section holds ``key`` (only the run's method's sections are validated)."""
    return ["method=esvit"] if key.startswith("esvit.") else []


# Sections of the built-in methods and the generic ones: a test may register a toy method with its own section.
BUILT_IN_SECTIONS = ("data", "crops", "model", "optim", "train", "dino", "esvit", "sit")


def _numeric_keys() -> dict[str, bool]:
    """Every numeric key (int, float or a list of them, optional or not) of describe(), mapped to "is a float"."""
    import typing

    from vitssl.config import section_types

    keys: dict[str, bool] = {}
    top = typing.get_type_hints(PretrainConfig)
    for key, _, _ in describe():
        section, _, name = key.rpartition(".")
        if not section or key.startswith(SKIPPED_SECTIONS) or section not in BUILT_IN_SECTIONS:
            continue
        cls = section_types()[section] if section in section_types() else top[section]
        hint = typing.get_type_hints(cls)[name]
        leaves = set(typing.get_args(hint)) or {hint}
        leaves |= {a for leaf in list(leaves) for a in typing.get_args(leaf)}  # list[float] -> float
        if leaves & {int, float}:
            keys[key] = float in leaves
    return keys


def test_every_numeric_key_has_a_bad_value_case():
    from vitssl.config.ranges import GENERIC_RANGES
    from vitssl.methods.dino.config import DINO_RANGES
    from vitssl.methods.esvit.config import ESVIT_RANGES

    numeric = set(_numeric_keys())
    assert len(numeric) >= 55
    assert numeric == set(BAD_VALUES), f"missing cases: {numeric - set(BAD_VALUES)}"
    assert numeric == set(GENERIC_RANGES) | set(DINO_RANGES) | set(ESVIT_RANGES)


@pytest.mark.parametrize("key", sorted(BAD_VALUES))
def test_out_of_range_value_is_a_one_line_error(key):
    value, message = BAD_VALUES[key]
    with pytest.raises(VitsslError, match=message) as err:
        load_config(None, [*_method_overrides(key), f"{key}={value}"])
    assert "\n" not in str(err.value) and f"{key}=..." in str(err.value)


@pytest.mark.parametrize("key", sorted(k for k, is_float in _numeric_keys().items() if is_float))
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_floats_are_refused(key, value):
    bad = f"[{value}, {value}, {value}]" if BAD_VALUES[key][0].startswith("[") else value
    with pytest.raises(VitsslError, match=key.replace(".", r"\.")):
        load_config(None, [*_method_overrides(key), f"{key}={bad}"])


@pytest.mark.parametrize(("override", "message"), RANGE_CHECK_CASES)
def test_issue_11_reports_are_one_line_errors(override, message):
    with pytest.raises(VitsslError, match=message) as err:
        load_config(None, ["train.knn_max_train=40", override])
    assert "\n" not in str(err.value)


def test_a_run_saved_next_to_a_plugin_method_reads_back_without_it():
    """A run saves every registered section; one written while a plugin (or a test's toy method) was registered
    carries its section, which must not stop `vitssl knn RUN` in a process without that plugin."""
    from vitssl.config.loading import from_dict, to_dict

    cfg = load_config(None, ["optim.lr=0.002"])
    values = {**to_dict(cfg), "toy_plugin": {"proj_dim": 3}}
    assert from_dict(values) == cfg
    with pytest.raises(VitsslError, match="unknown config key 'toy_plugin'"):  # the run's own method: not dropped
        from_dict({**values, "method": "toy_plugin"})
    with pytest.raises(VitsslError, match="unknown config key 'nme'"):  # only whole sections are dropped
        from_dict({**values, "nme": "run"})


def test_koleo_needs_two_images_per_batch():
    """KoLeo's nearest neighbour is found within the process's batch: one image would fail mid-run."""
    with pytest.raises(VitsslError, match="dino.koleo_weight 0.1 needs at least 2 images per batch") as err:
        load_config(None, ["dino.koleo_weight=0.1", "data.batch_size=1"])
    assert "\n" not in str(err.value)
    load_config(None, ["dino.koleo_weight=0", "data.batch_size=1"])


def test_edges_of_the_ranges_are_accepted():
    cfg = load_config(
        None,
        [
            "model.drop_path=0",
            "optim.min_lr=0",
            "optim.weight_decay=0",
            "optim.warmup_epochs=0",
            "optim.clip_grad=0",
            "optim.betas=[0, 0.999]",
            "crops.local_count=0",
            "crops.hue=0.5",
            "dino.momentum_teacher=1",
            "train.knn_k=5000",
            "train.device=cuda:1",  # existence is checked when training starts, not when a config loads
            "model.depth=1",
            "model.patch_size=1",
        ],
    )
    assert cfg.model.drop_path == 0 and cfg.train.knn_k == cfg.train.knn_max_train
