"""``vitssl report RUN``: one self-contained HTML page about a run, with the PNGs it uses beside it.

The page gathers what a reader of a self-supervised run wants in one place: the resolved config; the curves
worth watching in DINO (Caron et al. 2021, arXiv 2104.14294) and its relatives (loss parts, learning rate,
weight decay, teacher momentum and temperature, the entropy diagnostics of its section 5.3, online k-NN); every
evaluation result found in the run folder (k-NN, linear probe, fine-tuning, segmentation probe, attention
Jaccard); and the pictures (attention maps, PCA, reconstructions). It uses no script, stylesheet or font from
the network, so it opens anywhere, also offline.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from matplotlib.figure import Figure

from vitssl.errors import VitsslError
from vitssl.report.plots import metric_series, read_metrics

# (title, file stem, predicate on metric names)
_CURVES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Loss and its parts", "loss", ("loss",)),
    ("Learning rate", "lr", ("lr",)),
    ("Weight decay", "weight_decay", ("weight_decay",)),
    ("Teacher momentum", "teacher_momentum", ("teacher_momentum",)),
    ("Teacher temperature", "teacher_temp", ("teacher_temp",)),
    ("Entropy diagnostics", "entropy", ("teacher_entropy", "kl_to_uniform", "entropy")),
    ("Prototypes in use", "prototypes", ("prototypes_in_use",)),
    ("Online k-NN (%)", "knn", ("knn_top1", "knn_top5")),
)
_RESULT_FILES = (
    "knn.json",
    "knn_online.json",
    "linear.json",
    "linear_fast.json",
    "linear_init.json",
    "linear_fast_init.json",
    "finetune.json",
    "finetune_init.json",
    "segment.json",
    "attention_score.json",
    "correspondence.json",
    "detect.json",
)
# (pattern, how many of its files at most: the newest by name, e.g. the last pictures a SiT run drew)
_PICTURE_GLOBS = (
    ("attention/*.png", 12),
    ("pca*.png", 4),
    ("reconstruction*.png", 4),
    ("*recon*.png", 4),
    ("pictures/*.png", 6),
    ("correspondence*.png", 4),
    ("detect_predictions.png", 1),
    ("knn_comparison.png", 1),
    ("curves.png", 1),
)
_MAX_PICTURES = 40
_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:.85em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f0f0f0}.grid{display:flex;flex-wrap:wrap;gap:1em}.grid figure{margin:0}
img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.8em;color:#555}
"""


def _matches(key: str, patterns: tuple[str, ...], stem: str) -> bool:
    if stem == "loss":
        return key == "loss" or key.startswith("loss_") or key.endswith("_loss")
    if stem == "entropy":
        return key in patterns or "entropy" in key
    return key in patterns


def draw_curves(records: list[dict], out_dir: Path) -> list[tuple[str, str]]:
    """One PNG per curve group that has data; returns (title, file name) pairs."""
    keys = sorted({k for r in records for k in r if k != "step"})
    written = []
    for title, stem, patterns in _CURVES:
        chosen = [k for k in keys if _matches(k, patterns, stem)]
        series = [(k, *metric_series(records, k)) for k in chosen]
        series = [s for s in series if s[1]]
        if not series:
            continue
        fig = Figure(figsize=(5.2, 3.0), layout="constrained")
        ax = fig.subplots()
        for key, steps, values in series:
            ax.plot(steps, values, marker="o" if len(steps) < 20 else None, markersize=3, label=key)
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
        name = f"curve_{stem}.png"
        fig.savefig(out_dir / name, dpi=90)
        written.append((title, name))
    return written


def _table(rows: list[list[object]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _result_html(name: str, data: dict) -> str:
    """A compact table for the known result files, the JSON itself for anything else."""
    if name == "knn.json":
        rows = [
            [net, k, v.get("top1"), v.get("top5")]
            for net, per_k in data.items()
            if isinstance(per_k, dict)
            for k, v in per_k.items()
            if isinstance(v, dict)
        ]
        return _table(rows, ["network", "k", "top-1 %", "top-5 %"])
    if name.startswith(("linear", "finetune")):
        f, b = data.get("final", {}), data.get("best", {})
        mode = str(data.get("mode", "fine-tuning"))
        if "lr" in data and not isinstance(data["lr"], list):
            mode += f"; lr {data['lr']:g} per 256 images"
        if data.get("sweep"):
            mode += "; lr sweep (final top-1 %): " + ", ".join(f"{k}: {v}" for k, v in data["sweep"].items())
        rows = [
            ["final", f.get("epoch"), f.get("top1"), f.get("top5")],
            ["best", b.get("epoch"), b.get("top1"), b.get("top5")],
        ]
        return f"<p>{html.escape(str(mode))}</p>" + _table(rows, ["", "epoch", "top-1 %", "top-5 %"])
    if name == "segment.json":
        rows = [[net, data[net]["miou"], data[net]["pixel_accuracy"]] for net in ("init", "pretrained") if net in data]
        return _table(rows, ["network", "mIoU %", "pixel accuracy %"])
    if name == "detect.json":
        return _detect_html(data)
    if name == "attention_score.json":
        rows = [[net, data[net]["mean_map"], data[net]["best_head"]] for net in ("init", "pretrained") if net in data]
        return _table(rows, ["network", "Jaccard, mean-of-heads mask %", "Jaccard, best head %"])
    return f"<pre>{html.escape(json.dumps(data, indent=2))}</pre>"


def _detect_html(data: dict) -> str:
    """``vitssl detect``: COCO box AP of the detector on the pretrained backbone (and at initialisation)."""
    mode = "frozen backbone" if data.get("freeze") else f"fine-tuned, layer decay {data.get('layer_decay')}"
    setup = f"{data.get('detector')} ({mode}) on {data.get('data')}, {data.get('image_size')} px"
    setup += f", {data.get('epochs')} epochs"
    rows = [
        [net, data[net].get("ap"), data[net].get("ap50"), data[net].get("ap75")]
        for net in ("init", "pretrained")
        if isinstance(data.get(net), dict)
    ]
    return f"<p>{html.escape(setup)}</p>" + _table(rows, ["network", "box AP %", "AP50 %", "AP75 %"])


def _collect_pictures(run_dir: Path, out_dir: Path) -> list[tuple[str, str]]:
    """Copy the run's pictures next to the page (the report folder travels alone); (caption, file name)."""
    found: list[Path] = []
    for pattern, limit in _PICTURE_GLOBS:
        matches = [p for p in sorted(run_dir.glob(pattern)) if out_dir not in p.parents and p not in found]
        found += matches[-limit:]
    pictures = []
    for path in found[:_MAX_PICTURES]:
        rel = path.relative_to(run_dir)
        name = "pic_" + "_".join(rel.parts)
        shutil.copyfile(path, out_dir / name)
        pictures.append((str(rel), name))
    return pictures


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write ``index.html`` and its PNGs into ``out_dir`` (default RUN/report); returns the page's path.

    Raises:
        VitsslError: If `run_dir` is not a run folder (no config.yaml and no metrics.jsonl).
    """
    run_dir = Path(run_dir)
    config, metrics = run_dir / "config.yaml", run_dir / "metrics.jsonl"
    if not run_dir.is_dir() or not (config.is_file() or metrics.is_file()):
        raise VitsslError(f"{run_dir} is not a vitssl run folder (no config.yaml or metrics.jsonl); pass a run folder")
    out = Path(out_dir) if out_dir else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>vitssl run report: {html.escape(run_dir.resolve().name)}</h1>"]
    records = read_metrics(metrics) if metrics.is_file() else []
    parts.append(_summary(records))
    parts.append("<h2>Training curves</h2>")
    curves = draw_curves(records, out) if records else []
    parts.append(_figures(curves) if curves else "<p>No metrics logged.</p>")
    parts.append("<h2>Evaluation results</h2>")
    results = [(name, _load_json(run_dir / name)) for name in _RESULT_FILES if (run_dir / name).is_file()]
    for name, data in results:
        parts.append(f"<h3>{html.escape(name)}</h3>" + _result_html(name, data))
    if not results:
        parts.append("<p>None yet: run <code>vitssl knn</code>, <code>linear</code>, <code>segment</code> ...</p>")
    pictures = _collect_pictures(run_dir, out)
    parts.append("<h2>Pictures</h2>" + (_figures(pictures) if pictures else "<p>No pictures in the run folder.</p>"))
    config_text = config.read_text() if config.is_file() else "(no config.yaml)"
    parts.append(f"<h2>Resolved config</h2><pre>{html.escape(config_text)}</pre>")
    page = out / "index.html"
    title = html.escape(f"vitssl report: {run_dir.resolve().name}")
    page.write_text(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n",
        encoding="utf-8",
    )
    return page


def _summary(records: list[dict]) -> str:
    losses = [r for r in records if isinstance(r.get("loss"), (int, float))]
    knn = [r for r in records if isinstance(r.get("knn_top1"), (int, float))]
    rows: list[list[object]] = []
    if losses:
        rows += [["optimiser steps", int(losses[-1]["step"])], ["final loss", f"{losses[-1]['loss']:.4f}"]]
    if knn:
        rows += [
            ["online k-NN top-1, first", f"{knn[0]['knn_top1']:.2f} %"],
            ["online k-NN top-1, last", f"{knn[-1]['knn_top1']:.2f} %"],
        ]
    return _table(rows, ["", "value"]) if rows else ""


def _figures(items: list[tuple[str, str]]) -> str:
    figs = "".join(
        f'<figure><img src="{html.escape(name)}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}'
        "</figcaption></figure>"
        for caption, name in items
    )
    return f'<div class="grid">{figs}</div>'


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return {"error": f"could not read {path.name}: {exc}"}
    return data if isinstance(data, dict) else {"value": data}
