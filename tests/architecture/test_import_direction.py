"""Imports run one way: commands / api -> eval / detection / engine / export -> report -> methods -> losses /
models / data -> config -> leaves.

Every ``import`` of every module (function-level imports included) is read with ``ast``; a lower layer that
imports a higher one fails the test with the offending line.

``report`` (curves, figures, the HTML page) depends on the leaves only. It sits below eval, engine and detection
rather than beside them because all three draw with it: the run folder writes the training curves, eval's
attention and PCA commands use its image grids, and it was a leaf (``plots``) before it became a package.
``detection`` is an evaluation like the others in ``eval`` and may use them (loading a backbone); eval never
imports detection. ``api`` is the public Python entry point, at the level of the commands that call it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "vitssl"
LEAVES = {
    "errors",
    "distributed",
    "device",
    "checkpoints",
    "schedules",
    "optim",
    "writing",
    "run_lock",
    "extras",
    "log",
}
_ABOVE_METHODS = {"engine", "eval", "detection", "export", "report", "commands", "cli", "api"}

# package (first path component under vitssl) -> vitssl packages it must never import
FORBIDDEN: dict[str, set[str]] = {
    "losses": {"methods", "data", *_ABOVE_METHODS},
    "models": {"methods", "data", *_ABOVE_METHODS},
    "data": {"models", "losses", "methods", *_ABOVE_METHODS},
    "config": {"data", "models", "losses", "methods", *_ABOVE_METHODS},
    "methods": _ABOVE_METHODS,
    "report": {"config", "data", "models", "losses", "methods", *(_ABOVE_METHODS - {"report"})},
    "eval": {"engine", "detection", "export", "commands", "cli", "api"},
    "detection": {"engine", "export", "commands", "cli", "api"},
    "export": {"engine", "detection", "commands", "cli", "api"},
    "engine": {"detection", "export", "commands", "cli", "api"},
    "api": {"commands", "cli"},
    **{leaf: {"config", "data", "models", "losses", "methods", *_ABOVE_METHODS} for leaf in LEAVES},
}
# The engine may use the Method interface, never a concrete method.
ENGINE_METHODS_ALLOWED = {"vitssl.methods.base"}


def _vitssl_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "vitssl":
                found += [(node.lineno, f"vitssl.{alias.name}") for alias in node.names]
            elif node.module.startswith("vitssl."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("vitssl.")]
    return found


def _layer(path: Path, package: Path) -> str:
    rel = path.relative_to(package)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _violations(package: Path = PACKAGE) -> list[str]:
    bad: list[str] = []
    for path in sorted(package.rglob("*.py")):
        layer = _layer(path, package)
        if path in (package / "__init__.py", package / "__main__.py"):
            continue  # the package root registers the built-in methods; `python -m vitssl` runs the CLI
        for lineno, module in _vitssl_imports(path):
            target = module.split(".")[1] if "." in module else module
            rel = path.relative_to(package.parent)
            if target in FORBIDDEN.get(layer, set()):
                bad.append(f"{rel}:{lineno} ({layer}) imports {module}")
            elif layer == "engine" and target == "methods" and module not in ENGINE_METHODS_ALLOWED:
                bad.append(f"{rel}:{lineno} (engine) imports {module}: only the Method interface is allowed")
    return bad


def test_lower_layers_never_import_higher_ones():
    assert _violations() == []


def test_the_checker_sees_a_violation(tmp_path):
    """The walk must catch a wrong arrow, including a lazy import inside a function."""
    fake = tmp_path / "vitssl"
    (fake / "losses").mkdir(parents=True)
    (fake / "losses" / "bad.py").write_text("def f():\n    from vitssl.engine.trainer import Trainer\n")
    (fake / "engine").mkdir()
    (fake / "engine" / "uses_dino.py").write_text("from vitssl.methods.dino.method import DINO\n")
    assert _violations(fake) == [
        "vitssl/engine/uses_dino.py:1 (engine) imports vitssl.methods.dino.method: only the Method interface "
        "is allowed",
        "vitssl/losses/bad.py:2 (losses) imports vitssl.engine.trainer",
    ]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_every_layer_exists(layer):
    assert (PACKAGE / layer).is_dir() or (PACKAGE / f"{layer}.py").is_file()


def test_one_home_per_feature():
    """Detection code lives in vitssl/detection and SiT's in vitssl/methods/sit, nowhere else."""
    strays = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.stem.startswith(("detection", "sit"))
        and not path.is_relative_to(PACKAGE / "detection")
        and not path.is_relative_to(PACKAGE / "methods" / "sit")
    ]
    assert strays == []
    assert (PACKAGE / "detection").is_dir() and (PACKAGE / "methods" / "sit").is_dir()


def test_data_keeps_a_short_top_level():
    """Data's modules are grouped into sub-packages, so its top level stays readable."""
    top = sorted(p.name for p in (PACKAGE / "data").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 12, top
