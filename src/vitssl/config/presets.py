"""The presets shipped inside the package (``vitssl/presets/**.yaml``), addressable by name.

A preset is named by its path under ``vitssl/presets`` without ``.yaml`` (``demo``, ``dino/vit_small_imagenet``),
so a wheel installed anywhere can run ``vitssl pretrain dino/vit_small_imagenet``; a clone also reaches them as
``configs/...`` (a link to the same folder). Each preset's first comment says what it reproduces
(``# Run: ...``) and, for the presets measured on a CPU, a ``# Measured: ...`` line gives the result.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from vitssl.errors import VitsslError

SUFFIX = ".yaml"
NEW_FIELD = re.compile(r"^# [A-Z][A-Za-z]*:")  # "# Source: ..." starts another paragraph


@dataclass(frozen=True)
class Preset:
    """One shipped preset.

    Attributes:
        name: Its name, e.g. ``dino/vit_small_imagenet``.
        path: The YAML file.
        summary: What run it reproduces, from its ``# Run:`` comment (one sentence).
        measured: Its measured result, from its ``# Measured:`` comment, or an empty string.
    """

    name: str
    path: Path
    summary: str
    measured: str


def presets_dir() -> Path:
    """The folder holding the presets, inside the installed package."""
    return Path(str(resources.files("vitssl") / "presets"))


def _first_sentence(text: str) -> str:
    """Text up to the first full stop or colon outside parentheses (``et al.`` and ``1.6`` do not end it)."""
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        end_of_text = i + 1 == len(text)
        if depth == 0 and char in ".:" and (end_of_text or text[i + 1] == " "):
            return text[:i].strip()
    return text.strip()


def _comment_field(lines: list[str], key: str) -> str:
    """The comment paragraph that starts with ``# key:``, joined across its continuation lines."""
    for i, line in enumerate(lines):
        if line.startswith(f"# {key}:"):
            parts = [line[len(f"# {key}:") :].strip()]
            for more in lines[i + 1 : i + 4]:
                if not more.startswith("# ") or more[2:3] in ("", " ") or NEW_FIELD.match(more):
                    break
                parts.append(more[2:].strip())
            return _first_sentence(" ".join(parts))
    return ""


def _read(path: Path, root: Path) -> Preset:
    lines = [line.rstrip() for line in path.read_text().splitlines() if line.startswith("#")]
    name = path.relative_to(root).with_suffix("").as_posix()
    return Preset(name, path, _comment_field(lines, "Run"), _comment_field(lines, "Measured"))


def list_presets() -> list[Preset]:
    """Every shipped preset, sorted by name."""
    root = presets_dir()
    return [_read(path, root) for path in sorted(root.rglob(f"*{SUFFIX}"))]


def resolve_config(spec: str | Path) -> Path:
    """The YAML file meant by ``spec``: an existing file path, else a preset name (``demo``,
    ``dino/vit_small_imagenet``, with or without ``.yaml`` or a leading ``configs/``).

    Raises:
        VitsslError: Neither a file nor a preset; the message names the closest presets.
    """
    path = Path(spec)
    if path.is_file():
        return path
    name = str(spec).removesuffix(SUFFIX).removeprefix("configs/")
    candidate = presets_dir() / f"{name}{SUFFIX}"
    if candidate.is_file():
        return candidate
    names = [p.name for p in list_presets()]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "`vitssl presets` lists them"
    raise VitsslError(f"config {spec} does not exist, as a file or as a preset name; {hint}")
