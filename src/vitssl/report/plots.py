"""Pictures of a run: training curves from metrics.jsonl and k-NN accuracy comparisons.

The curves are the ones worth watching in DINO (Caron et al. 2021, arXiv 2104.14294): the loss, the online
weighted k-NN accuracy (the paper's main yardstick), the schedules (learning rate, teacher temperature and
momentum), and the collapse diagnostics of its section 5.3 (teacher entropy and KL divergence to uniform).

Figures are drawn on a bare `matplotlib.figure.Figure`, which renders with the Agg canvas and never touches
pyplot's global state or a display, so plotting is safe on headless machines and inside other programs.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vitssl.errors import VitsslError

_PANEL_WIDTH, _PANEL_HEIGHT = 5.5, 3.2
_SMOOTHING_MIN_POINTS = 20


@dataclass(frozen=True)
class _Panel:
    """One subplot: the metric keys drawn in it and how to label it."""

    title: str
    keys: tuple[str, ...]
    ylabel: str


_PANELS: tuple[_Panel, ...] = (
    _Panel("Training loss", ("loss",), "loss"),
    _Panel("Online weighted k-NN", ("knn_top1",), "top-1 accuracy (%)"),
    _Panel("Learning rate", ("lr",), "learning rate"),
    _Panel("Teacher temperature", ("teacher_temp",), "temperature"),
    _Panel("Teacher EMA momentum", ("teacher_momentum",), "momentum"),
    _Panel("Collapse diagnostics", ("teacher_entropy", "kl_to_uniform"), "nats"),
    _Panel("Prototypes in use", ("prototypes_in_use",), "perplexity of the batch-mean teacher output"),
)


def read_metrics(path: str | Path) -> list[dict]:
    """Read a metrics.jsonl file: one JSON object per line, each with at least a "step".

    A run killed mid-write leaves a truncated last line, and a run resumed after that appends to the same
    file, so a damaged line can also sit in the middle; such lines are skipped with one warning instead of
    making the whole history unreadable.

    Args:
        path: The metrics.jsonl file of a run.

    Returns:
        The records in file order (a resumed run may repeat steps; plotting keeps the latest value per step).

    Raises:
        VitsslError: If the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise VitsslError(f"Metrics file {path} does not exist; pass the metrics.jsonl inside a run folder.")
    records: list[dict] = []
    skipped: list[int] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            record = _parse_line(line)
            if record is None and line.strip():
                skipped.append(number)
            elif record is not None:
                records.append(record)
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} unreadable line(s): {skipped[:10]}", stacklevel=2)
    return records


def plot_training_curves(metrics_path: str | Path, out_png: str | Path) -> Path:
    """Draw the training curves of a run into one PNG.

    Panels appear only for metrics that were logged: loss, online k-NN top-1 ("knn_top1"), learning rate
    ("lr"), teacher temperature ("teacher_temp"), teacher momentum ("teacher_momentum") and collapse
    diagnostics ("teacher_entropy", "kl_to_uniform"), each against the optimiser step.

    Args:
        metrics_path: The run's metrics.jsonl.
        out_png: Where to write the picture; parent folders are created.

    Returns:
        `out_png` as a Path.

    Raises:
        VitsslError: If the file is missing or holds none of the metrics above.
    """
    records = read_metrics(metrics_path)
    panels = [(panel, series) for panel in _PANELS if (series := _panel_series(records, panel))]
    if not panels:
        known = sorted({key for panel in _PANELS for key in panel.keys})
        raise VitsslError(f"{metrics_path} has no plottable metrics (looked for {known}); is it a vitssl run?")

    columns = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(_PANEL_WIDTH * columns, _PANEL_HEIGHT * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (panel, series) in zip(axes[: len(panels)], panels, strict=True):
        _draw_panel(ax, panel, series)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    figure.suptitle(f"Training curves: {Path(metrics_path).parent.name or Path(metrics_path).name}")
    return _save(figure, out_png)


def plot_knn_comparison(results: dict[str, dict[int, dict[str, float]]], out_png: str | Path) -> Path:
    """Grouped bars of weighted k-NN top-1 accuracy per k, one bar colour per labelled result set.

    Args:
        results: `{label: {k: {"top1": percent, ...}}}`, e.g. `{"init": ..., "pretrained": ...}` from
            :func:`vitssl.eval.knn.weighted_knn`. Keys k may be strings (as after a JSON round trip).
        out_png: Where to write the picture; parent folders are created.

    Returns:
        `out_png` as a Path.

    Raises:
        VitsslError: If there is nothing to compare.
    """
    table = {label: {int(k): float(r["top1"]) for k, r in per_k.items()} for label, per_k in results.items()}
    ks = sorted({k for per_k in table.values() for k in per_k})
    if not ks:
        raise VitsslError("No k-NN results to plot; pass {label: weighted_knn(...)} with at least one entry.")

    figure = Figure(figsize=(max(5.0, 1.4 * len(ks) + 2.0), 4.0), layout="constrained")
    ax = figure.subplots()
    width = 0.8 / len(table)
    for i, (label, per_k) in enumerate(table.items()):
        positions = [j + (i - (len(table) - 1) / 2) * width for j, k in enumerate(ks) if k in per_k]
        bars = ax.bar(positions, [per_k[k] for k in ks if k in per_k], width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set_xlabel("k (nearest neighbours)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Weighted k-NN accuracy")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, out_png)


def _parse_line(line: str) -> dict | None:
    """One record, or None for a blank, truncated or otherwise unusable line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("step"), int | float):
        return None
    return record


def metric_series(records: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one metric, sorted by step, keeping the last value logged for each step.

    After a resume the steps between the last checkpoint and the crash are logged twice; the later value is
    the one the resumed run actually continued from. Records without a step are skipped.
    """
    latest = {record["step"]: record[key] for record in records if "step" in record and _is_number(record.get(key))}
    steps = sorted(latest)
    return steps, [float(latest[step]) for step in steps]


def _panel_series(records: list[dict], panel: _Panel) -> dict[str, tuple[list[float], list[float]]]:
    """The non-empty series of a panel's keys, by key."""
    found = {key: metric_series(records, key) for key in panel.keys}
    return {key: series for key, series in found.items() if series[0]}


def _draw_panel(ax: Axes, panel: _Panel, series: dict[str, tuple[list[float], list[float]]]) -> None:
    """Plot the series of one panel with its title, labels and, for long noisy curves, a smoothed line."""
    for key, (steps, values) in series.items():
        single = len(steps) == 1
        line = ax.plot(steps, values, marker="o" if single or key == "knn_top1" else None, label=key)[0]
        if len(values) >= _SMOOTHING_MIN_POINTS and key == "loss":
            line.set_alpha(0.35)
            ax.plot(
                steps,
                _moving_average(values, max(1, len(values) // 40)),
                color=line.get_color(),
                label="loss (smoothed)",
            )
    ax.set_title(panel.title)
    ax.set_xlabel("step")
    ax.set_ylabel(panel.ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1 or "loss" in series and len(series["loss"][0]) >= _SMOOTHING_MIN_POINTS:
        ax.legend(fontsize=8)


def _moving_average(values: list[float], half_width: int) -> list[float]:
    """Centred mean over `2 * half_width + 1` points, ignoring NaN/inf so one bad step leaves no gap.

    Centred rather than trailing so the smoothed loss does not lag behind the steep early descent.
    """
    array = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(array)
    # Running sums of values and of counts give every window's mean in one pass; windows shrink at the ends.
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, array, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    index = np.arange(len(array))
    starts = np.maximum(index - half_width, 0)
    ends = np.minimum(index + half_width + 1, len(array))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums[ends] - sums[starts]) / (counts[ends] - counts[starts])
    return means.tolist()


def _is_number(value: object) -> bool:
    """True for ints and floats (NaN too: matplotlib leaves a gap), False for bools, None and the rest."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _save(figure: Figure, out_png: str | Path) -> Path:
    """Write the figure as a PNG, creating parent folders."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, dpi=120)
    return out_png
