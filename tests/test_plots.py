"""Tests of the run pictures: training curves from metrics.jsonl and k-NN comparisons."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from vitssl.errors import VitsslError
from vitssl.report.plots import plot_knn_comparison, plot_training_curves, read_metrics


def _write_metrics(path: Path, steps: int = 40, truncated: bool = True, extra: bool = True) -> Path:
    lines = []
    for step in range(steps):
        record: dict = {"step": step, "loss": 10.0 * math.exp(-step / 10) + 0.1 * (step % 3)}
        if extra:
            record |= {
                "lr": 1e-3 * min(1.0, (step + 1) / 10),
                "teacher_temp": 0.04 + 0.03 * min(1.0, step / 30),
                "teacher_momentum": 0.996 + 0.004 * step / steps,
                "teacher_entropy": 4.0 - step / 20,
                "kl_to_uniform": step / 20,
            }
        lines.append(json.dumps(record))
        if extra and step % 10 == 9:
            lines.append(json.dumps({"step": step, "knn_top1": 20.0 + step, "knn_top5": 60.0 + step}))
    text = "\n".join(lines) + "\n"
    if truncated:
        text += '{"step": 40, "loss": 0.'  # a run killed while writing its last line
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _assert_png(path: Path, min_width: int, min_height: int) -> None:
    assert path.is_file()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_width and image.height >= min_height
        assert image.width <= 4000 and image.height <= 4000
        # Not a blank canvas: a drawn figure has many colours.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10


def test_read_metrics_skips_a_truncated_last_line(tmp_path: Path) -> None:
    path = _write_metrics(tmp_path / "metrics.jsonl")
    with pytest.warns(UserWarning, match="skipped 1 unreadable line"):
        records = read_metrics(path)
    assert len(records) == 40 + 4  # 40 training records and 4 k-NN records
    assert records[0]["step"] == 0 and records[-1]["knn_top1"] == 59.0


def test_read_metrics_skips_a_damaged_line_in_the_middle_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n\n{"step": 2, "lo{"step": 2, "loss": 1.5}\n{"loss": 1}\n')
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable line\(s\): \[3, 4\]"):
        records = read_metrics(path)
    assert records == [{"step": 1, "loss": 2.0}]


def test_read_metrics_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VitsslError, match="does not exist"):
        read_metrics(tmp_path / "nope.jsonl")


def test_plot_training_curves_with_every_panel(tmp_path: Path) -> None:
    metrics = _write_metrics(tmp_path / "run" / "metrics.jsonl")
    with pytest.warns(UserWarning):
        out = plot_training_curves(metrics, tmp_path / "plots" / "curves.png")
    assert out == tmp_path / "plots" / "curves.png"
    _assert_png(out, min_width=800, min_height=800)  # six panels: 2 columns x 3 rows


def test_plot_training_curves_without_knn_or_schedules(tmp_path: Path) -> None:
    metrics = _write_metrics(tmp_path / "metrics.jsonl", steps=5, truncated=False, extra=False)
    out = plot_training_curves(metrics, tmp_path / "curves.png")
    _assert_png(out, min_width=400, min_height=250)


def test_plot_training_curves_keeps_the_last_value_of_repeated_steps(tmp_path: Path) -> None:
    # A resumed run logs the steps after its last checkpoint again; NaN losses must not break the plot.
    path = tmp_path / "metrics.jsonl"
    records = [{"step": s, "loss": 1.0} for s in range(30)] + [{"step": s, "loss": 0.5} for s in range(20, 40)]
    records[5]["loss"] = float("nan")
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    _assert_png(plot_training_curves(path, tmp_path / "curves.png"), min_width=400, min_height=250)


def test_plot_training_curves_without_known_metrics(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "throughput": 3.0}\n')
    with pytest.raises(VitsslError, match="no plottable metrics"):
        plot_training_curves(path, tmp_path / "curves.png")


def test_plot_knn_comparison(tmp_path: Path) -> None:
    results = {
        "init": {10: {"top1": 30.5, "top5": 70.0}, 20: {"top1": 31.0, "top5": 71.0}},
        "pretrained": {"10": {"top1": 80.0, "top5": 97.0}, "20": {"top1": 81.5, "top5": 97.5}},  # JSON keys
        "partial": {200: {"top1": 75.0, "top5": 95.0}},
    }
    out = plot_knn_comparison(results, tmp_path / "knn.png")
    assert out == tmp_path / "knn.png"
    _assert_png(out, min_width=500, min_height=400)


def test_plot_knn_comparison_without_results(tmp_path: Path) -> None:
    with pytest.raises(VitsslError, match="No k-NN results"):
        plot_knn_comparison({}, tmp_path / "knn.png")
