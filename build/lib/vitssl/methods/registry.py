"""The method registry: the config's ``method:`` name -> the method's factory and its config sections.

Adding a method is one new module that defines its config dataclass and decorates its factory::

    @dataclass
    class ToyConfig:
        width: int = field_with_help(8, "Hidden width.")

    @register_method("toy", sections={"toy": ToyConfig})
    def build_toy(cfg: PretrainConfig) -> Method:
        return Toy(cfg)

Config loading then accepts ``toy.width=...`` and ``method: toy``; the trainer and the CLI need no change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from vitssl.config import register_method_name, register_section
from vitssl.errors import VitsslError

if TYPE_CHECKING:
    from vitssl.config import PretrainConfig
    from vitssl.methods.base import Method

Factory = Callable[["PretrainConfig"], "Method"]
_FACTORIES: dict[str, Factory] = {}


def register_method(
    name: str, sections: Mapping[str, type] | None = None, reads: tuple[str, ...] = ()
) -> Callable[[Factory], Factory]:
    """Register a method factory under ``name``.

    Args:
        name: The config's ``method:`` value.
        sections: Config sections this method introduces (section name -> dataclass with defaults).
        reads: Sections registered by other methods that this one reads too (EsViT reads ``dino``).
    """

    def wrap(factory: Factory) -> Factory:
        for section, cls in (sections or {}).items():
            register_section(section, cls)
        register_method_name(name, tuple(reads) + tuple(sections or {}))
        _FACTORIES[name] = factory
        return factory

    return wrap


def available_methods() -> list[str]:
    return sorted(_FACTORIES)


def build_method(cfg: PretrainConfig) -> Method:
    """The method named by ``cfg.method``, built from ``cfg``."""
    if cfg.method not in _FACTORIES:
        raise VitsslError(f"unknown method '{cfg.method}'; choose one of {', '.join(available_methods())}")
    return _FACTORIES[cfg.method](cfg)
