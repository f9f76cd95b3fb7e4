"""The method registry: the config's ``method:`` name -> the method's factory and its config sections.

Adding a method is one new module that defines its config dataclass and decorates its factory::

    @dataclass
    class ToyConfig:
        width: int = field_with_help(8, "Hidden width.")

    @register_method("toy", sections={"toy": ToyConfig})
    def build_toy(cfg: PretrainConfig) -> Method:
        return Toy(cfg)

Config loading then accepts ``toy.width=...`` and ``method: toy``; the trainer and the CLI need no change.
What the packages above the methods may know about a method (its paper for the model card, the extra timm
arguments its backbone needs) is its :class:`MethodInfo`, so none of them compares method names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vitssl.config import register_method_name, register_section
from vitssl.errors import VitsslError

if TYPE_CHECKING:
    from vitssl.config import PretrainConfig
    from vitssl.methods.base import Method

Factory = Callable[["PretrainConfig"], "Method"]
_FACTORIES: dict[str, Factory] = {}


@dataclass(frozen=True)
class MethodInfo:
    """What evaluation, export and the commands may know about a method, instead of testing its name.

    Attributes:
        paper: The citation that model cards and reports name, e.g. ``"DINO (Caron et al. 2021, arXiv ...)"``.
        timm_args: Extra ``timm.create_model`` arguments that rebuild the method's backbone as a plain timm model
            (SiT's contrastive token is a timm register token: ``{"reg_tokens": 1}``).
    """

    paper: str
    timm_args: Mapping[str, Any] = field(default_factory=dict)


_INFO: dict[str, MethodInfo] = {}


def register_method(
    name: str, sections: Mapping[str, type] | None = None, reads: tuple[str, ...] = (), info: MethodInfo | None = None
) -> Callable[[Factory], Factory]:
    """Register a method factory under ``name``.

    Args:
        name: The config's ``method:`` value.
        sections: Config sections this method introduces (section name -> dataclass with defaults).
        reads: Sections registered by other methods that this one reads too (EsViT reads ``dino``).
        info: What the packages above may know about it (see :func:`describe_method`).
    """

    def wrap(factory: Factory) -> Factory:
        for section, cls in (sections or {}).items():
            register_section(section, cls)
        register_method_name(name, tuple(reads) + tuple(sections or {}))
        _FACTORIES[name] = factory
        if info is not None:
            describe_method(name, info)
        return factory

    return wrap


def describe_method(name: str, info: MethodInfo) -> None:
    """Attach ``info`` to the method ``name`` (its package may do so apart from the factory)."""
    _INFO[name] = info


def method_info(name: str) -> MethodInfo:
    """The :class:`MethodInfo` of ``name``; a method that gave none is cited by its name and needs no timm extras."""
    return _INFO.get(name, MethodInfo(paper=name))


def available_methods() -> list[str]:
    return sorted(_FACTORIES)


def build_method(cfg: PretrainConfig) -> Method:
    """The method named by ``cfg.method``, built from ``cfg``."""
    if cfg.method not in _FACTORIES:
        raise VitsslError(f"unknown method '{cfg.method}'; choose one of {', '.join(available_methods())}")
    return _FACTORIES[cfg.method](cfg)
