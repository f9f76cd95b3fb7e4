"""The engine stays readable and its faults stay named: the trainer is at most 300 lines, no engine module
catches ``Exception`` (or everything), and only the run folder's name list spells the names of a run's files."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "src" / "vitssl" / "engine"
TRAINER_MAX_LINES = 300
TOO_BROAD = {"Exception", "BaseException"}
# Names only vitssl.engine.run_files may spell inside the engine.
RUN_FILE_NAMES = ("last.pt", "metrics.jsonl", "config.yaml", "curves.png", "knn_online.json", "knn.json")


def _caught_names(handler: ast.ExceptHandler) -> list[str]:
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return [t.id if isinstance(t, ast.Name) else ast.unparse(t) for t in types if t is not None]


def broad_handlers(folder: Path) -> list[str]:
    """``file:line`` of every bare ``except:`` and every handler naming Exception or BaseException (alone or in a
    tuple) under ``folder``."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler) and (node.type is None or TOO_BROAD & set(_caught_names(node))):
                found.append(f"{path.relative_to(folder)}:{node.lineno}")
    return found


def test_the_trainer_is_at_most_300_lines():
    lines = len((ENGINE / "trainer.py").read_text().splitlines())
    assert lines <= TRAINER_MAX_LINES, f"engine/trainer.py has {lines} lines; move a concept into its own module"


def test_no_engine_module_catches_exception():
    assert broad_handlers(ENGINE) == []


def test_the_checker_sees_broad_handlers(tmp_path):
    (tmp_path / "a.py").write_text(
        "try:\n    pass\nexcept:\n    pass\n"
        "try:\n    pass\nexcept (OSError, Exception):\n    pass\n"
        "try:\n    pass\nexcept BaseException as exc:\n    pass\n"
        "try:\n    pass\nexcept (OSError, ValueError):\n    pass\n"
    )
    assert broad_handlers(tmp_path) == ["a.py:3", "a.py:7", "a.py:11"]


def test_only_run_files_spells_the_run_file_names():
    spelled = []
    for path in sorted(ENGINE.rglob("*.py")):
        if path.name == "run_files.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in RUN_FILE_NAMES:
                spelled.append(f"{path.relative_to(ENGINE)}:{node.lineno} {node.value!r}")
    assert spelled == []
