"""The committed benchmark results name no machine: every command, override and data folder they record is relative
to the repository root (``python -m vitssl ...``, ``benchmarks/results/...``, ``../shared/data/...``), so that a
result reads the same wherever it was measured and its commands can be pasted from the repository root.

Reads the files only (no benchmark runs).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FILES = sorted(p for p in RESULTS.rglob("*") if p.suffix in (".json", ".md"))

# A machine's own folders anywhere in the text (not inside a URL or after "..", which is relative).
MACHINE_FOLDER = re.compile(r"(?<![\w.~/-])/(?:work|tmp|home|root|Users|mnt|private|var)/")
# An absolute path as a token of a command: alone, or the value of key=path or --flag=path.
ABSOLUTE_TOKEN = re.compile(r"^(?:[\w.-]+=)?/[\w.~-]")


def strings(obj: Any) -> Iterator[str]:
    """Every string in a JSON document (keys and values)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield key
            yield from strings(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from strings(value)


def tokens(text: str) -> list[str]:
    """``text`` split as a shell would (or at blanks where it is not a shell line)."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def absolute_paths(texts: list[str]) -> list[str]:
    return [t for text in texts for t in [*MACHINE_FOLDER.findall(text), *filter(ABSOLUTE_TOKEN.match, tokens(text))]]


def test_there_are_results_to_check():
    names = {p.relative_to(RESULTS).as_posix() for p in FILES}
    assert {"bench.json", "learn/learn.json", "learn/learn.md"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(RESULTS).as_posix())
def test_results_record_no_absolute_path(path: Path):
    text = path.read_text()
    # JSON: every string (commands, overrides, data folders); Markdown: every `code span` and the text around it.
    texts = list(strings(json.loads(text))) if path.suffix == ".json" else re.findall(r"`([^`\n]+)`", text)
    assert not absolute_paths(texts), path
    assert not MACHINE_FOLDER.search(text), path


def test_the_check_catches_absolute_paths():
    commands = [
        "/usr/bin/python -m vitssl knn run",
        "python -m vitssl pretrain demo data.train=/data/cifar10/train",
        "python -m vitssl knn run --train=/srv/cifar10/train",
        "train.out_dir=/tmp/vitssl-bench-x",
    ]
    assert all(absolute_paths([c]) for c in commands)
    relative = [
        "python -m vitssl knn benchmarks/results/learn/dino-15min --train ../shared/data/cifar10/train",
        'python -m vitssl pretrain demo data.train="$VITSSL_TEST_DATA"/cifar10/train',
        "train.out_dir=<temporary folder>",
        "head 4096/2048/256, https://github.com/home/x",
    ]
    assert not absolute_paths(relative)
