"""Typed configuration: dataclasses loaded from YAML, with ``key.sub=value`` overrides.

Every field carries its help text in ``metadata["help"]``; ``vitssl pretrain --help-config`` prints them, so the
dataclasses below are also the tuning guide. Errors name the key, the problem and the fix in one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from vitssl.errors import VitsslError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _f(default: Any, help: str) -> Any:
    """A dataclass field with a help text (mutable defaults are copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    train: str = _f(
        "synthetic",
        "Pretraining images: a folder (any nesting; labels ignored) or a named dataset: "
        "'synthetic' (built in, offline), 'cifar10' (downloaded into data.cache_dir).",
    )
    val: str | None = _f(
        None,
        "Labelled folder (root/<class>/<images>) or named dataset for the online k-NN "
        "queries; for named datasets the test split is used. Leave empty to skip online k-NN.",
    )
    knn_train: str | None = _f(
        None,
        "Labelled memory set for the online k-NN; defaults to data.train when that "
        "is labelled (class subfolders or a named dataset).",
    )
    cache_dir: str = _f("~/.cache/vitssl", "Where named datasets are downloaded or generated.")
    batch_size: int = _f(
        64,
        "Images per process per micro-batch. The effective batch is "
        "batch_size x optim.accumulate x processes; the lr is scaled with it.",
    )
    num_workers: int = _f(
        2,
        "Data loader worker processes per training process. 0 loads in the main "
        "process (slower, but easiest to debug). Results do not depend on it.",
    )
    max_images: int | None = _f(
        None,
        "Use a fixed subset of this many training images (stratified when labelled). Handy for quick experiments.",
    )
    cache: Literal["auto", "memory", "none"] = _f(
        "auto",
        "'memory' decodes every image once and keeps it in "
        "RAM (fast for small data sets); 'none' decodes on the fly; "
        "'auto' picks memory for small data sets.",
    )
    mean: list[float] = _f(list(IMAGENET_MEAN), "Per-channel normalisation mean (RGB, 0..1).")
    std: list[float] = _f(list(IMAGENET_STD), "Per-channel normalisation std (RGB, 0..1).")
    eval_size: int | None = _f(None, "Image side for k-NN evaluation (center crop). Defaults to crops.global_size.")
    eval_resize: int | None = _f(
        None,
        "Resize the shorter side to this before the center crop during "
        "evaluation (ImageNet: 256 for 224 crops). Defaults to eval_size.",
    )


@dataclass
class CropsConfig:
    global_size: int = _f(224, "Side of the two global crops in pixels.")
    global_scale: list[float] = _f(
        [0.4, 1.0],
        "Area range of global crops relative to the image. With no local crops, (0.14, 1.0) is the paper's choice.",
    )
    local_count: int = _f(
        8,
        "Number of small local crops per image (multi-crop). 0 disables multi-crop. More "
        "crops give more learning signal per image at extra compute (they are small).",
    )
    local_size: int = _f(96, "Side of the local crops in pixels (ImageNet: 96 for 224 global crops).")
    local_scale: list[float] = _f([0.05, 0.4], "Area range of local crops relative to the image.")
    jitter_p: float = _f(0.8, "Probability of colour jitter on each crop.")
    brightness: float = _f(0.4, "Colour-jitter brightness strength (factor drawn from [1 - x, 1 + x]).")
    contrast: float = _f(0.4, "Colour-jitter contrast strength.")
    saturation: float = _f(0.2, "Colour-jitter saturation strength.")
    hue: float = _f(
        0.1,
        "Colour-jitter hue shift, in turns of the colour wheel (at most 0.5). Raise it when "
        "colour is a shortcut that says nothing about the content (e.g. randomly coloured shapes).",
    )
    grayscale_p: float = _f(0.2, "Probability of converting a crop to grayscale.")
    blur_radius: list[float] = _f(
        [0.1, 2.0],
        "Range of the Gaussian blur radius in pixels (DINO's values are "
        "for 224 px crops; scale them down for small images, e.g. [0.1, 0.5] at 32 px).",
    )


@dataclass
class ModelConfig:
    backbone: str = _f("vit_small", "Backbone: a preset (vit_tiny, vit_small, vit_base) or any timm ViT name.")
    patch_size: int | None = _f(
        None,
        "Patch size override (e.g. 4 for 32 px images). Smaller patches give "
        "more tokens: better features, quadratically more attention compute.",
    )
    img_size: int | None = _f(
        None,
        "Native image size of the position embeddings (other crop sizes are "
        "interpolated). Defaults to crops.global_size.",
    )
    depth: int | None = _f(None, "Number of transformer blocks override (fewer blocks: faster, weaker).")
    drop_path: float = _f(0.1, "Stochastic depth rate of the student (the teacher always uses 0).")


@dataclass
class DINOConfig:
    out_dim: int = _f(
        65536,
        "Head output dimension K (number of prototypes). Large K helps on ImageNet; "
        "small data sets are fine with a few thousand.",
    )
    hidden_dim: int = _f(2048, "Hidden width of the head's MLP.")
    bottleneck_dim: int = _f(256, "Bottleneck width before the weight-normalised last layer.")
    use_bn_in_head: bool = _f(False, "BatchNorm in the head MLP (off in the paper's ViT recipe).")
    norm_last_layer: bool = _f(
        True,
        "Freeze the norm of the last layer's weights (cosine logits). Stabler; "
        "set false for better results at the risk of instability.",
    )
    student_temp: float = _f(0.1, "Student softmax temperature.")
    teacher_temp: float = _f(0.07, "Final teacher temperature. Start at 0.04; above ~0.07 training is unstable.")
    warmup_teacher_temp: float = _f(0.04, "Initial teacher temperature; lower it if the loss stays flat early.")
    warmup_teacher_temp_epochs: float = _f(30, "Epochs of linear warm-up from warmup_teacher_temp to teacher_temp.")
    center_momentum: float = _f(
        0.9,
        "Momentum of the teacher-output centre (centring prevents collapse to one "
        "dimension; sharpening prevents collapse to uniform).",
    )
    momentum_teacher: float = _f(
        0.996,
        "Initial EMA momentum of the teacher, raised to 1 by a cosine schedule. "
        "Use a higher value (0.9995) with small batches and a lower one (0.99) for "
        "very short runs.",
    )
    freeze_last_layer: float = _f(
        1, "Epochs during which the head's last layer gets no update; helps the start of training."
    )


@dataclass
class OptimConfig:
    epochs: float = _f(100, "Length of training in epochs (fractions allowed). All schedules span it.")
    lr: float = _f(5e-4, "Peak learning rate for an effective batch of 256; scaled linearly with the batch.")
    min_lr: float = _f(1e-6, "Learning rate at the end of the cosine schedule.")
    warmup_epochs: float = _f(10, "Epochs of linear learning-rate warm-up from 0.")
    weight_decay: float = _f(
        0.04,
        "Initial weight decay (cosine schedule to weight_decay_end). Biases and 1-D parameters (norms) get none.",
    )
    weight_decay_end: float = _f(0.4, "Final weight decay.")
    betas: list[float] = _f([0.9, 0.999], "AdamW betas.")
    clip_grad: float = _f(
        3.0,
        "Clip each parameter tensor's gradient to this norm (per tensor, as in DINO); 0 disables clipping.",
    )
    accumulate: int = _f(
        1,
        "Micro-batches per optimiser step (gradient accumulation); the centre and the "
        "teacher update once per optimiser step.",
    )


@dataclass
class TrainConfig:
    out_dir: str = _f(
        "runs/{name}",
        "Run folder ({name} is replaced). Re-running the same command resumes from the last checkpoint in it.",
    )
    seed: int = _f(0, "Seed of every random choice (model init, views, order).")
    device: str = _f("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = _f(
        "auto",
        "'auto' = bf16 autocast on CUDA when "
        "supported (else fp16 with a loss scaler), fp32 "
        "on CPU. Losses are always computed in fp32.",
    )
    threads: int | None = _f(None, "torch CPU threads (default: torch's choice).")
    log_every: int = _f(10, "Write metrics every this many optimiser steps.")
    checkpoint_every: int = _f(200, "Save a resumable checkpoint every this many steps (and at the end).")
    knn_every: int = _f(0, "Run the online k-NN every this many steps (0: only at the end) when data.val is set.")
    knn_k: int = _f(20, "k of the online k-NN.")
    knn_max_train: int = _f(5000, "Cap on the k-NN memory set (fixed stratified subset).")
    knn_max_val: int = _f(1000, "Cap on the k-NN query set (fixed stratified subset).")
    max_nonfinite: int = _f(5, "Stop after this many consecutive non-finite losses (each is skipped).")
    progress: bool = _f(True, "Show a progress bar.")


@dataclass
class PretrainConfig:
    name: str = _f("dino", "Name of the run (used in the run folder's path).")
    method: str = _f("dino", "Self-supervised method: dino.")
    data: DataConfig = field(default_factory=DataConfig)
    crops: CropsConfig = field(default_factory=CropsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    dino: DINOConfig = field(default_factory=DINOConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.train.out_dir.format(name=self.name)).expanduser()


# --------------------------------------------------------------------------------------------------------------
# Loading, overrides and validation


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        return f"list of {_type_name(get_args(tp)[0])}"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats. Raise a clear error."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        for option in get_args(tp):
            try:
                return _coerce(value, option, key)
            except VitsslError:
                continue
    elif origin is Literal:
        if value in get_args(tp):
            return value
    elif origin is list:
        if isinstance(value, (list, tuple)):
            return [_coerce(v, get_args(tp)[0], key) for v in value]
    elif tp is type(None):
        if value is None:
            return None
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '5e-4' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp in (bool, str) and isinstance(value, tp):
        return value
    raise VitsslError(
        f"config key '{key}' expects {_type_name(tp)}, got {value!r}; fix the value in the YAML "
        f"file or override it with {key}=..."
    )


def _unknown_key(key: str, valid: list[str], prefix: str) -> VitsslError:
    # Same words in another order (teacher_momentum vs momentum_teacher) rank first, then spelling neighbours.
    reordered = [v for v in valid if sorted(v.split("_")) == sorted(key.split("_"))]
    close = reordered + [c for c in difflib.get_close_matches(key, valid, n=3, cutoff=0.5) if c not in reordered]
    if close:
        hint = f"did you mean {', '.join(prefix + c for c in close[:3])}?"
    else:
        hint = f"valid keys: {', '.join(prefix + v for v in valid)}"
    return VitsslError(f"unknown config key '{prefix}{key}'; {hint}")


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    if not isinstance(values, dict):
        raise VitsslError(f"config section '{prefix.rstrip('.')}' must be a mapping, got {values!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in hints:
            raise _unknown_key(str(key), names, prefix)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value if value is not None else {}, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, tp, prefix + key)
    return cls(**kwargs)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["optim.lr=1e-3", "data.train=/x"]`` into a nested dict; values are parsed as YAML scalars/lists."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise VitsslError(f"override '{item}' is not of the form key.sub=value (e.g. optim.lr=1e-3)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, set)):
            value = raw
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise VitsslError(f"override '{item}' sets a sub-key of '{part}', which is not a section")
        node[parts[-1]] = value
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise VitsslError(f"config file {path} does not exist; pass a YAML file such as configs/demo.yaml")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise VitsslError(f"config file {path} is not valid YAML{where}; fix its syntax") from None
    if not isinstance(data, dict):
        raise VitsslError(f"config file {path} must contain a mapping of keys to values")
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> PretrainConfig:
    """Load a :class:`PretrainConfig` from YAML (or defaults when ``path`` is None) plus dotted overrides."""
    values = read_yaml(path) if path is not None else {}
    values = _merge(values, parse_overrides(overrides or []))
    cfg = _build(PretrainConfig, values)
    validate(cfg)
    return cfg


def from_dict(values: dict[str, Any]) -> PretrainConfig:
    cfg = _build(PretrainConfig, values)
    validate(cfg)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: PretrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise VitsslError(message)


def validate(cfg: PretrainConfig) -> None:
    """Range checks that types alone cannot express."""
    from vitssl.methods import available_methods

    _check(
        cfg.method in available_methods(),
        f"unknown method '{cfg.method}'; choose one of {', '.join(available_methods())}",
    )
    _check(cfg.data.batch_size >= 1, "data.batch_size must be >= 1")
    _check(cfg.data.num_workers >= 0, "data.num_workers must be >= 0")
    _check(len(cfg.data.mean) == 3 and len(cfg.data.std) == 3, "data.mean and data.std need 3 values (RGB)")
    _check(all(s > 0 for s in cfg.data.std), "data.std values must be positive")
    _check(
        len(cfg.crops.blur_radius) == 2 and 0 < cfg.crops.blur_radius[0] <= cfg.crops.blur_radius[1],
        f"crops.blur_radius must be two numbers 0 < min <= max, got {cfg.crops.blur_radius}",
    )
    for key in ("global_scale", "local_scale"):
        lo_hi = getattr(cfg.crops, key)
        _check(
            len(lo_hi) == 2 and 0 < lo_hi[0] <= lo_hi[1] <= 1,
            f"crops.{key} must be two numbers 0 < min <= max <= 1, got {lo_hi}",
        )
    _check(0 <= cfg.crops.hue <= 0.5, f"crops.hue must be in [0, 0.5], got {cfg.crops.hue}")
    _check(cfg.crops.local_count >= 0, "crops.local_count must be >= 0")
    _check(cfg.crops.global_size > 0 and cfg.crops.local_size > 0, "crop sizes must be positive")
    _check(cfg.optim.epochs > 0, "optim.epochs must be > 0")
    _check(cfg.optim.accumulate >= 1, "optim.accumulate must be >= 1")
    _check(cfg.optim.lr > 0, "optim.lr must be > 0")
    _check(len(cfg.optim.betas) == 2, "optim.betas needs two values")
    _check(0 <= cfg.dino.momentum_teacher <= 1, "dino.momentum_teacher must be in [0, 1]")
    _check(0 <= cfg.dino.center_momentum < 1, "dino.center_momentum must be in [0, 1)")
    _check(
        cfg.dino.teacher_temp > 0 and cfg.dino.warmup_teacher_temp > 0 and cfg.dino.student_temp > 0,
        "temperatures must be > 0",
    )
    _check(cfg.dino.out_dim >= 2, "dino.out_dim must be >= 2")
    _check(
        cfg.train.log_every >= 1 and cfg.train.checkpoint_every >= 1,
        "train.log_every and train.checkpoint_every must be >= 1",
    )
    patch = cfg.model.patch_size
    if patch is not None:
        for key in ("global_size", "local_size"):
            size = getattr(cfg.crops, key)
            _check(
                size % patch == 0,
                f"crops.{key}={size} is not a multiple of model.patch_size={patch}; "
                "choose sizes divisible by the patch size",
            )


def describe(cls: type = PretrainConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, help) rows for every field, for ``--help-config``."""
    rows: list[tuple[str, str, str]] = []
    instance = cls()
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe(type(value), f"{prefix}{f.name}."))
        else:
            rows.append((prefix + f.name, repr(value), f.metadata.get("help", "")))
    return rows


__all__ = [
    "PretrainConfig",
    "DataConfig",
    "CropsConfig",
    "ModelConfig",
    "DINOConfig",
    "OptimConfig",
    "TrainConfig",
    "load_config",
    "from_dict",
    "to_dict",
    "save_config",
    "parse_overrides",
    "describe",
    "validate",
    "read_yaml",
]
