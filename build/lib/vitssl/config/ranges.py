"""Allowed ranges of the numeric config keys, and the checks that turn a value outside them into one line.

Every numeric key of the generic sections has a range in :data:`GENERIC_RANGES`; methods keep the ranges of their
own sections next to their config (e.g. ``DINO_RANGES``). tests/test_config.py fails when a key has none.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from vitssl.errors import VitsslError


def require(ok: bool, message: str) -> None:
    """Raise a one-line :class:`VitsslError` with ``message`` unless ``ok`` (for config validation)."""
    if not ok:
        raise VitsslError(message)


@dataclass(frozen=True)
class Range:
    """The allowed interval of a numeric config key (every element of a list key); nan and inf are never allowed."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):  # math.isfinite overflows on huge ints
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        low, high = _plain(self.low), _plain(self.high)
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {low}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _plain(bound: float) -> str:
    """A range bound as written in a config: 1 and 4294967295 rather than 1.0 and 4.29497e+09."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


AT_LEAST_ONE = Range(1)
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_open=True)
UNIT = Range(0, 1)
UNIT_BELOW_ONE = Range(0, 1, high_open=True)  # rates where 1 would drop or freeze everything (drop_path, betas)
AREA_FRACTION = Range(0, 1, low_open=True)
SEED = Range(0, 2**32 - 1)  # what every seeded generator (torch, numpy) accepts, with room for per-step offsets

# Every numeric key of the generic sections and its range; tests/test_config.py fails when a key is missing here.
GENERIC_RANGES: dict[str, Range] = {
    "data.batch_size": AT_LEAST_ONE,
    "data.num_workers": NON_NEGATIVE,
    "data.max_images": AT_LEAST_ONE,
    "data.mean": UNIT,
    "data.std": POSITIVE,
    "data.repeated_augmentation": AT_LEAST_ONE,
    "data.eval_size": AT_LEAST_ONE,
    "data.eval_resize": AT_LEAST_ONE,
    "crops.global_size": AT_LEAST_ONE,
    "crops.global_scale": AREA_FRACTION,
    "crops.local_count": NON_NEGATIVE,
    "crops.local_size": AT_LEAST_ONE,
    "crops.local_scale": AREA_FRACTION,
    "crops.jitter_p": UNIT,
    "crops.brightness": NON_NEGATIVE,
    "crops.contrast": NON_NEGATIVE,
    "crops.saturation": NON_NEGATIVE,
    "crops.hue": Range(0, 0.5),
    "crops.grayscale_p": UNIT,
    "crops.blur_radius": POSITIVE,
    "model.patch_size": AT_LEAST_ONE,
    "model.img_size": AT_LEAST_ONE,
    "model.depth": AT_LEAST_ONE,
    "model.window_size": AT_LEAST_ONE,
    "model.drop_path": UNIT_BELOW_ONE,
    "optim.epochs": POSITIVE,
    "optim.lr": POSITIVE,
    "optim.min_lr": NON_NEGATIVE,
    "optim.warmup_epochs": NON_NEGATIVE,
    "optim.weight_decay": NON_NEGATIVE,
    "optim.weight_decay_end": NON_NEGATIVE,
    "optim.betas": UNIT_BELOW_ONE,
    "optim.clip_grad": NON_NEGATIVE,
    "optim.accumulate": AT_LEAST_ONE,
    "train.seed": SEED,
    "train.threads": AT_LEAST_ONE,
    "train.budget_minutes": POSITIVE,
    "train.log_every": AT_LEAST_ONE,
    "train.checkpoint_every": AT_LEAST_ONE,
    "train.knn_every": NON_NEGATIVE,
    "train.knn_k": AT_LEAST_ONE,
    "train.knn_max_train": AT_LEAST_ONE,
    "train.knn_max_val": AT_LEAST_ONE,
    "train.picture_every": NON_NEGATIVE,
    "train.max_nonfinite": AT_LEAST_ONE,
    "train.keep_checkpoints": AT_LEAST_ONE,
}

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def is_device_name(name: str) -> bool:
    """Whether ``name`` is 'auto', 'cpu', 'cuda' or 'cuda:N' (whether that GPU exists is checked at run time, so
    that a GPU run's config still loads on a CPU machine, e.g. for evaluation)."""
    return _DEVICE.fullmatch(name) is not None


def check_range(key: str, value: Any, allowed: Range) -> None:
    """A one-line error unless ``value`` (each element of a list; None where the key allows it) is in ``allowed``."""
    if value is None:
        return
    values = value if isinstance(value, list) else [value]
    subject = f"every value of {key}" if isinstance(value, list) else key
    require(
        all(v in allowed for v in values),
        f"{subject} must be {allowed}, got {value!r}; fix it in the YAML file or override it with {key}=...",
    )


def check_ranges(section: Any, prefix: str, ranges: dict[str, Range]) -> None:
    """:func:`check_range` for every ``prefix.key`` of ``ranges`` on the dataclass ``section``."""
    for key, allowed in ranges.items():
        name = key.removeprefix(prefix + ".")
        check_range(key, getattr(section, name), allowed)
