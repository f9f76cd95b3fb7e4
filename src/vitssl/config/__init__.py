"""Typed configuration: dataclasses loaded from YAML, with ``key.sub=value`` overrides.

Every field carries its help text in ``metadata["help"]``; ``vitssl pretrain --help-config`` prints them, so the
schema is also the tuning guide.
"""

from vitssl.config.loading import (
    from_dict,
    load_config,
    parse_overrides,
    read_yaml,
    save_config,
    to_dict,
    validate,
)
from vitssl.config.schema import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CropsConfig,
    DataConfig,
    DINOConfig,
    ModelConfig,
    OptimConfig,
    PretrainConfig,
    TrainConfig,
    describe,
)

__all__ = [
    "PretrainConfig",
    "DataConfig",
    "CropsConfig",
    "ModelConfig",
    "DINOConfig",
    "OptimConfig",
    "TrainConfig",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "load_config",
    "from_dict",
    "to_dict",
    "save_config",
    "parse_overrides",
    "describe",
    "validate",
    "read_yaml",
]
