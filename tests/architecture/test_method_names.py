"""Outside ``vitssl.methods`` no code branches on a method's name: what the other packages need to know about a
method comes from its :class:`~vitssl.methods.registry.MethodInfo` (or from the objects it builds)."""

from __future__ import annotations

import ast
from pathlib import Path

from vitssl.methods import MethodInfo, available_methods, method_info

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "vitssl"


def _name_comparisons(path: Path, package: Path, names: set[str]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for operand in operands:
                elements = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
                hits = [e.value for e in elements if isinstance(e, ast.Constant) and e.value in names]
                found += [f"{path.relative_to(package.parent)}:{node.lineno} compares with {hit!r}" for hit in hits]
    return found


def _violations(package: Path, names: set[str]) -> list[str]:
    return [
        hit
        for path in sorted(package.rglob("*.py"))
        if not path.is_relative_to(package / "methods") and not path.is_relative_to(package / "config")
        for hit in _name_comparisons(path, package, names)
    ]


def test_no_method_name_checks_outside_methods():
    assert _violations(PACKAGE, set(available_methods())) == []


def test_the_check_sees_a_name_comparison(tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "spec.py").write_text('def f(cfg):\n    return cfg.method in ("dino", "x")\n')
    assert _violations(tmp_path, {"dino", "sit"}) == [f"{tmp_path.name}/export/spec.py:2 compares with 'dino'"]


def test_every_built_in_method_describes_itself():
    papers = {name: method_info(name).paper for name in ("dino", "esvit", "sit")}
    assert all("arXiv" in paper for paper in papers.values()), papers
    assert method_info("sit").timm_args == {"reg_tokens": 1}
    assert method_info("dino").timm_args == {}


def test_a_method_without_info_is_cited_by_its_name():
    assert method_info("toy_without_info") == MethodInfo(paper="toy_without_info")
