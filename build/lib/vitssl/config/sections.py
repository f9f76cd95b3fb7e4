"""The registry of method config sections: what makes the config open to a new method.

A method registers the dataclass of its own section (``register_section("dino", DINOConfig)``) and the method
name with the sections it reads (``register_method_name("esvit", ("dino", "esvit"))``). Config loading then
accepts that section's keys, fills in its defaults and calls its ``validate(cfg)`` (when it has one); no file of
the config package changes when a method is added. Registration happens when the method's module is imported
(``import vitssl`` imports the built-in methods).
"""

from __future__ import annotations

import dataclasses
from typing import Any

_SECTIONS: dict[str, type] = {}
_METHODS: dict[str, tuple[str, ...]] = {}


def register_section(name: str, cls: type) -> None:
    """Make ``name:`` a config section holding a ``cls`` dataclass (its fields need defaults)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"config section {name!r} must be a dataclass, got {cls!r}")
    if name in _SECTIONS and _SECTIONS[name] is not cls:
        raise ValueError(f"config section {name!r} is already registered by {_SECTIONS[name].__qualname__}")
    _SECTIONS[name] = cls


def register_method_name(name: str, sections: tuple[str, ...] = ()) -> None:
    """Make ``method: name`` valid; ``sections`` are the sections that method reads (validated when chosen)."""
    _METHODS[name] = tuple(sections)


def section_types() -> dict[str, type]:
    return dict(_SECTIONS)


def method_names() -> list[str]:
    return sorted(_METHODS)


def method_sections(name: str) -> tuple[str, ...]:
    return _METHODS.get(name, ())


def default_sections() -> dict[str, Any]:
    """Every registered section at its defaults."""
    return {name: cls() for name, cls in _SECTIONS.items()}
