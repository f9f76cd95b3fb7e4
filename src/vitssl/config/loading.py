"""Loading configs: YAML (safe loader) + dotted overrides -> typed dataclasses, with one-line errors that
name the key, the problem and the fix; plus range validation."""

from __future__ import annotations

import dataclasses
import difflib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from vitssl.config.presets import resolve_config
from vitssl.config.ranges import (  # noqa: F401  (re-exported: the method sections use them)
    AT_LEAST_ONE,
    GENERIC_RANGES,
    NON_NEGATIVE,
    POSITIVE,
    UNIT,
    UNIT_BELOW_ONE,
    Range,
    check_range,
    check_ranges,
    is_device_name,
    require,
)
from vitssl.config.schema import PretrainConfig
from vitssl.config.sections import default_sections, method_names, method_sections, section_types
from vitssl.errors import VitsslError


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
        if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool) and _fits_float(value)):
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


def _fits_float(value: int) -> bool:
    """Whether the integer converts to a float (beyond about 1.8e308 ``float()`` raises OverflowError)."""
    try:
        float(value)
    except OverflowError:
        return False
    return True


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
    names = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("sections")]
    open_sections = cls is PretrainConfig
    known = section_types() if open_sections else {}
    kwargs: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for key, value in values.items():
        if key in known:
            sections[key] = _build(known[key], value if value is not None else {}, f"{prefix}{key}.")
            continue
        if key not in names:
            raise _unknown_key(str(key), names + sorted(known), prefix)
        tp = hints[key]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value if value is not None else {}, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, tp, prefix + key)
    if open_sections:
        kwargs["sections"] = {**default_sections(), **sections}
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


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, values: Mapping[str, Any] | None = None
) -> PretrainConfig:
    """Load a :class:`PretrainConfig` from a YAML file or a shipped preset's name (or defaults when ``path`` is
    None) plus overrides: the command line's ``key.sub=value`` strings, then ``values`` (Python values under
    dotted or nested keys)."""
    merged = read_yaml(resolve_config(path)) if path is not None else {}
    merged = _merge(merged, parse_overrides(overrides or []))
    merged = _merge(merged, nest_values(values or {}))
    cfg = _build(PretrainConfig, merged)
    validate(cfg)
    return cfg


def with_values(cfg: PretrainConfig, values: Mapping[str, Any]) -> PretrainConfig:
    """``cfg`` with ``values`` (Python values under dotted or nested keys) applied, checked like a loaded config."""
    return from_dict(_merge(to_dict(cfg), nest_values(values)))


def nest_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"optim.lr": 1e-3, "data": {"batch_size": 8}}`` as a nested dict: ``{"optim": {"lr": 1e-3}, "data":
    {"batch_size": 8}}``. Values stay as given (no YAML parsing); a key that sets a sub-key of a value is one line."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        *parents, last = str(key).strip().split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise VitsslError(f"override '{key}' sets a sub-key of '{part}', which is not a section")
        node[last] = (
            _merge(node[last], value) if isinstance(node.get(last), dict) and isinstance(value, dict) else value
        )
    return nested


def from_dict(values: dict[str, Any]) -> PretrainConfig:
    """The config saved with a run (its checkpoints' ``config``), checked like a loaded one."""
    cfg = _build(PretrainConfig, _without_foreign_sections(values))
    validate(cfg)
    return cfg


def _without_foreign_sections(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` less the sections of methods this process does not know. A run saves every section registered
    when it ran, so one written next to a plugin method (or a test's toy method) carries that method's section;
    it plays no part in the run of another method, and reading the run back must not need the plugin. The run's
    own method and every other key stay (an unknown method is then reported as such)."""
    known = {f.name for f in dataclasses.fields(PretrainConfig)} | set(section_types())
    method = values.get("method")
    return {k: v for k, v in values.items() if k in known or k == method or not isinstance(v, dict)}


def to_dict(cfg: PretrainConfig) -> dict[str, Any]:
    """The config as plain containers; method sections appear at the top level, as in the YAML files."""
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if not f.metadata.get("sections")}
    plain = {
        k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v
        for k, v in values.items()
    }
    plain.update({name: dataclasses.asdict(section) for name, section in cfg.sections.items()})
    return plain


def save_config(cfg: PretrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def validate(cfg: PretrainConfig) -> None:
    """Range checks that types alone cannot express: every numeric key, then how keys fit together."""
    require(
        cfg.method in method_names(),
        f"unknown method '{cfg.method}'; choose one of {', '.join(method_names())}",
    )
    _check_list_lengths(cfg)
    for section in ("data", "crops", "model", "optim", "train"):
        ranges = {k: r for k, r in GENERIC_RANGES.items() if k.startswith(section + ".")}
        check_ranges(getattr(cfg, section), section, ranges)
    _check_combinations(cfg)
    for name in method_sections(cfg.method):
        check = getattr(cfg.sections[name], "validate", None)
        if callable(check):
            check(cfg)  # each method section checks its own keys (and how they fit the rest of the recipe)


def _check_list_lengths(cfg: PretrainConfig) -> None:
    """List keys have a fixed length; checked before their values so that the message names the real problem."""
    require(len(cfg.data.mean) == 3 and len(cfg.data.std) == 3, "data.mean and data.std need 3 values (RGB)")
    require(len(cfg.optim.betas) == 2, f"optim.betas needs two values, got {cfg.optim.betas}; e.g. [0.9, 0.999]")
    for key in ("global_scale", "local_scale", "blur_radius"):
        lo_hi = getattr(cfg.crops, key)
        require(
            len(lo_hi) == 2 and lo_hi[0] <= lo_hi[1],
            f"crops.{key} must be two numbers [min, max] with min <= max, got {lo_hi}",
        )


def _check_combinations(cfg: PretrainConfig) -> None:
    """Keys that are each in range but do not fit together."""
    require(
        is_device_name(cfg.train.device),
        f"train.device={cfg.train.device!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'",
    )
    try:
        cfg.train.out_dir.format(name=cfg.name)
    except (KeyError, IndexError, ValueError, AttributeError):
        raise VitsslError(
            f"train.out_dir={cfg.train.out_dir!r} may contain only the placeholder {{name}}; remove other braces"
        ) from None
    require(
        cfg.train.knn_k <= cfg.train.knn_max_train,
        f"train.knn_k={cfg.train.knn_k} exceeds the k-NN memory set cap train.knn_max_train="
        f"{cfg.train.knn_max_train}; lower train.knn_k or raise train.knn_max_train",
    )
    patch = cfg.model.patch_size
    if patch is not None:
        for key in ("global_size", "local_size"):
            size = getattr(cfg.crops, key)
            require(
                size % patch == 0,
                f"crops.{key}={size} is not a multiple of model.patch_size={patch}; "
                "choose sizes divisible by the patch size",
            )
