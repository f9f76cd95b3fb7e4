"""Typed configuration: dataclasses loaded from YAML, with ``key.sub=value`` overrides.

Every field carries its help text in ``metadata["help"]``; ``vitssl pretrain --help-config`` prints them, so the
schema is also the tuning guide.
"""

from vitssl.config.loading import (
    from_dict,
    load_config,
    parse_overrides,
    read_yaml,
    require,
    save_config,
    to_dict,
    validate,
    with_values,
)
from vitssl.config.normalisation import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD
from vitssl.config.schema import (
    CropsConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    PretrainConfig,
    TrainConfig,
    describe,
    field_with_help,
)
from vitssl.config.sections import (
    method_names,
    method_sections,
    register_method_name,
    register_section,
    section_types,
)

__all__ = [
    "PretrainConfig",
    "DataConfig",
    "CropsConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "load_config",
    "with_values",
    "from_dict",
    "to_dict",
    "save_config",
    "parse_overrides",
    "describe",
    "validate",
    "read_yaml",
    "require",
    "field_with_help",
    "register_section",
    "register_method_name",
    "method_names",
    "method_sections",
    "section_types",
]
