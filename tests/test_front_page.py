"""The README stays a one-screen front page, and code, tests and presets say what and why, never when: dates,
issue numbers and trial names belong in docs/ result pages and the changelog."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HISTORY = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b|\b[Ii]ssue #?\d+\b|\btrials? [A-Z]\d+\b")


def _files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in ("src", "tests"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".yaml", ".md"}]
    return files


def test_readme_fits_a_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_no_history_in_readme_code_tests_or_presets():
    files = _files()
    assert len(files) > 100  # the walk found the tree
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()[:80]}"
        for path in files
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if HISTORY.search(line)
    ]
    assert found == []


def test_the_pattern_sees_history():
    # spelt from parts, so that this file itself carries no history for the walk above to find
    date, issue, trial = "-".join(("2026", "12", "02")), " ".join(("issue", "16")), " ".join(("trial", "M1"))
    assert all(HISTORY.search(t) for t in (f"measured {date}", f"see {issue}", f"{trial} vs K1"))
    assert not HISTORY.search("ViT-S/16 at 224 px, 20-NN 47.2 %")
