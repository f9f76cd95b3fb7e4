"""Learning per unit of compute (issue 16): each method's short-budget CIFAR-10 preset, pretrained for a wall-clock
budget, scored by 20-NN on the full sets next to the same network at initialisation and next to raw pixels.

    python benchmarks/learn.py [--budgets 15 60] [--methods dino dino_15min dino_mini_15min esvit_vit esvit_swin
        esvit_mini_15min esvit_swin_15min sit_mini_15min sit sit_masked sit_masked_mini_15min]
        [--data $VITSSL_TEST_DATA/cifar10] [--out benchmarks/results/learn] [--max-train N --max-val N]

For every method and budget, in one process after another (nothing else should run meanwhile); a short-budget
preset's epochs scale with the budget (E = its epochs x B / its built-in budget, e.g. 8 -> 32 for 60 minutes):
    vitssl pretrain PRESET data.train=DATA/train train.budget_minutes=B [optim.epochs=E] train.out_dir=OUT/METHOD-B
    vitssl knn OUT/METHOD-B --train DATA/train --val DATA/test --k 20 --compare-init --pixels
    vitssl linear OUT/METHOD-B --fast --train DATA/train --val DATA/test --epochs 20 --lr 0.03 [--init-only]
Writes OUT/learn.md (the table, with the command behind every row), OUT/learn.json and OUT/learn.png (20-NN and
the fast linear probe against wall-clock minutes of pretraining; initialisation at minute 0, raw pixels as a line).
Minutes of pretraining mean little without the machine: once per invocation the benchmark measures the fp32 matmul
rate (median of 2048 x 2048 products at the runs' thread count) and every row it pretrains keeps that rate, the CPU
model and the thread count, so rows from different machines can be compared. Commands are recorded relative to
the repository root (benchmarks/common.recorded).
The linear probe (`--fast`: frozen features extracted once, no augmentation; one learning rate, final epoch, so
the test set chooses nothing) is skipped with --no-linear. A run folder that
already holds a finished run is scored again without retraining, so an interrupted benchmark resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO,
    RESULTS,
    cpu_model,
    environment,
    fmt,
    markdown_table,
    recorded,
    write_json,
    write_text,
)
from flops import square_matmul_gflops  # noqa: E402

# The short-budget preset of each method (the paper-faithful presets sit beside them in configs/).
PRESETS: dict[str, str] = {
    "dino": "configs/dino/vit_tiny_cifar10.yaml",
    "dino_15min": "configs/dino/vit_tiny_cifar10_15min.yaml",  # the first trials' best recipe (docs/learning.md)
    "dino_mini_15min": "configs/dino/vit_mini_cifar10_15min.yaml",  # ViT-Mini + KoLeo: the later trials' best
    "esvit_vit": "configs/esvit/vit_tiny_cifar10.yaml",
    "esvit_swin": "configs/esvit/swin_mini_cifar10.yaml",
    "esvit_mini_15min": "configs/esvit/vit_mini_cifar10_15min.yaml",  # DINO's 15-minute recipe + region loss
    "esvit_swin_15min": "configs/esvit/swin_mini_cifar10_15min.yaml",  # the same on the small Swin, patch 4
    "sit_mini_15min": "configs/sit/vit_mini_cifar10_15min.yaml",  # ViT-Mini + KoLeo, grey and blur patches only
    "sit": "configs/sit/vit_tiny_cifar10.yaml",
    "sit_masked": "configs/sit/vit_tiny_cifar10_masked.yaml",
    "sit_masked_mini_15min": "configs/sit/vit_mini_cifar10_masked_15min.yaml",  # ViT-Mini + KoLeo
}
K = 20
LINEAR = ("--fast", "--epochs", "20", "--lr", "0.03")  # one setting for every row: nothing tuned on the test set
MATMUL_SIZE = 2048  # the square product bench.py quotes too (square_matmul_gflops)
MACHINE_KEYS = ("matmul_gflops", "matmul_size", "cpu", "threads")


def default_data() -> Path | None:
    base = os.environ.get("VITSSL_TEST_DATA")
    return Path(base) / "cifar10" if base else None


def vitssl(*args: str) -> list[str]:
    return [sys.executable, "-m", "vitssl", *args]


def run_threads(overrides: list[str]) -> int:
    """The CPU threads the runs use: the last ``train.threads=N`` among the extra overrides, else torch's own
    choice, which the runs (same environment, no ``train.threads`` in the presets) make too."""
    given = [o.partition("=")[2] for o in overrides if o.startswith("train.threads=")]
    return int(given[-1]) if given and given[-1] not in ("null", "~", "") else torch.get_num_threads()


def machine(threads: int) -> dict[str, Any]:
    """This machine's fp32 matmul rate at ``threads`` threads (GFLOP/s, median of 5 products), its CPU model and
    the thread count: what a row's minutes of pretraining are worth elsewhere."""
    torch.set_num_threads(threads)
    gflops = square_matmul_gflops(n=MATMUL_SIZE, dtype=torch.float32, device="cpu", repeats=5)
    return {"matmul_gflops": gflops, "matmul_size": MATMUL_SIZE, "cpu": cpu_model(), "threads": threads}


def run_logged(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` with its output in ``log``; the wall-clock seconds it took. A failure stops the benchmark."""
    start = time.perf_counter()
    with log.open("a") as out:
        out.write("$ " + shlex.join(cmd) + "\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {shlex.join(cmd)}; see {log}")
    return time.perf_counter() - start


def epochs_for(preset: str, budget: float) -> list[str]:
    """``optim.epochs=N`` that keeps a short-budget preset's epochs per minute at another budget.

    A preset with ``train.budget_minutes`` built in plans as many epochs as fit that budget here; the budget only
    shortens a run, so a 60-minute row of a 15-minute preset needs four times the epochs to use its hour (its cosine
    schedules then span the hour). Paper-style presets (no built-in budget) keep their epochs.
    """
    config = yaml.safe_load((REPO / preset).read_text())
    planned = (config.get("train") or {}).get("budget_minutes")
    epochs = (config.get("optim") or {}).get("epochs")
    if not planned or not epochs or budget == planned:
        return []
    return [f"optim.epochs={epochs * budget / planned:g}"]


def one_run(method: str, budget: float, args: argparse.Namespace) -> dict[str, Any]:
    """Pretrain ``method`` for ``budget`` minutes (or reuse the finished run) and score it. The machine's rate
    (``args.machine``) is kept with the pretraining's seconds, so a reused run keeps the machine it trained on (a
    run trained before the rate was recorded has none)."""
    run_dir = args.out / f"{method}-{budget:g}min"
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "benchmark.log"
    train, val = args.data / "train", args.data / "test"
    pretrain = vitssl(
        "pretrain",
        PRESETS[method],
        f"data.train={train}",
        "data.val=null",  # scored below on the full sets; no online k-NN inside the budget
        f"train.budget_minutes={budget:g}",
        *epochs_for(PRESETS[method], budget),
        f"train.out_dir={run_dir}",
        "train.progress=false",
        *args.overrides,
    )
    timing = run_dir / "pretrain_seconds.json"
    if not timing.exists():
        seconds = run_logged(pretrain, log)
        timing.write_text(json.dumps({"seconds": seconds, **args.machine}))
    timed = json.loads(timing.read_text())
    seconds = timed["seconds"]
    knn = vitssl("knn", str(run_dir), "--train", str(train), "--val", str(val), "--k", str(K))
    knn += ["--compare-init", "--pixels", "--out", str(run_dir / "knn_full.json")]
    knn += [*(["--max-train", str(args.max_train)] if args.max_train else [])]
    knn += [*(["--max-val", str(args.max_val)] if args.max_val else [])]
    run_logged(knn, log)
    commands = [recorded(pretrain), recorded(knn)]
    scores = json.loads((run_dir / "knn_full.json").read_text())
    steps = sum(1 for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in line)
    linear: dict[str, float] = {}
    if args.linear:
        for at_init, key in ((False, "linear"), (True, "linear_init")):
            probe = vitssl("linear", str(run_dir), "--train", str(train), "--val", str(val), *LINEAR)
            probe += [*(["--init-only"] if at_init else [])]
            probe += [*(["--max-train", str(args.max_train)] if args.max_train else [])]
            probe += [*(["--max-val", str(args.max_val)] if args.max_val else [])]
            run_logged(probe, log)
            commands.append(recorded(probe))
            name = "linear_fast_init.json" if at_init else "linear_fast.json"
            linear[key] = json.loads((run_dir / name).read_text())["final"]["top1"]
    return {
        "method": method,
        "preset": PRESETS[method],
        "budget_minutes": budget,
        "pretrain_minutes": seconds / 60,
        "logged_steps": steps,
        "pixels": scores["pixels"][str(K)]["top1"],
        "init": scores["init"][str(K)]["top1"],
        "pretrained": scores["pretrained"][str(K)]["top1"],
        **linear,
        **{key: timed[key] for key in MACHINE_KEYS if key in timed},
        "commands": commands,
    }


def plot(rows: list[dict[str, Any]], out_png: Path) -> None:
    from matplotlib.figure import Figure

    panels = [("init", "pretrained", f"{K}-NN top-1 (%)")]
    if any("linear" in r for r in rows):
        panels.append(("linear_init", "linear", "fast linear probe top-1 (%)"))
    figure = Figure(figsize=(7 * len(panels), 4.5), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    # One colour per method in both panels (matplotlib's cycle would restart per panel and skip methods).
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    for ax, (init_key, key, ylabel) in zip(axes, panels, strict=True):
        for method in (m for m in methods if any(r["method"] == m and key in r for r in rows)):
            mine = sorted((r for r in rows if r["method"] == method and key in r), key=lambda r: r["pretrain_minutes"])
            xs = [0.0] + [r["pretrain_minutes"] for r in mine]
            ys = [mine[0][init_key]] + [r[key] for r in mine]
            ax.plot(xs, ys, marker="o", color=colours[method], label=method)
        if key == "pretrained":
            pixels = rows[0]["pixels"]
            ax.axhline(pixels, color="grey", linestyle="--", label=f"raw pixels, {K}-NN ({pixels:.1f} %)")
        ax.set_xlabel("wall-clock minutes of pretraining (2 CPU cores)")
        ax.set_ylabel(f"CIFAR-10 {ylabel}")
        ax.legend(fontsize=8)
    figure.suptitle("Learning per minute: full CIFAR-10 test set, full training set as memory / probe data")
    figure.savefig(out_png, dpi=120)


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    header = ["method", "budget", "minutes", f"{K}-NN init", f"{K}-NN pretrained", "gain", "raw pixels", "vs pixels"]
    header += ["linear init", "linear pretrained", "matmul GFLOP/s"]
    table = markdown_table(
        header,
        [
            [
                r["method"],
                f"{r['budget_minutes']:g} min",
                fmt(r["pretrain_minutes"], 1),
                fmt(r["init"]),
                fmt(r["pretrained"]),
                fmt(r["pretrained"] - r["init"], 1),
                fmt(r["pixels"]),
                fmt(r["pretrained"] - r["pixels"], 1),
                fmt(r["linear_init"]) if "linear_init" in r else "-",
                fmt(r["linear"]) if "linear" in r else "-",
                fmt(r["matmul_gflops"], 0) if "matmul_gflops" in r else "-",
            ]
            for r in rows
        ],
    )
    commands = "\n".join(f"- {r['method']} {r['budget_minutes']:g} min:\n  `{c}`" for r in rows for c in r["commands"])
    invocation = recorded([sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])
    return (
        f"# Learning per minute of CPU (CIFAR-10, {K}-NN top-1 %)\n\n`{invocation}`\n\n{table}\n\n"
        f"matmul GFLOP/s: the machine's fp32 rate on {MATMUL_SIZE} x {MATMUL_SIZE} products at the run's thread "
        f"count, measured when the row was pretrained (- where it was not recorded).\n\n"
        f"![learning curves](learn.png)\n\nCommands:\n{commands}\n"
    )


def earlier_rows(path: Path, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of an earlier run of this benchmark that this run did not measure again (other methods or
    budgets), so that the table grows one method at a time; each row keeps its own commands."""
    if not path.exists():
        return []
    done = {(r["method"], r["budget_minutes"]) for r in new}
    return [r for r in json.loads(path.read_text())["rows"] if (r["method"], r["budget_minutes"]) not in done]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=float, nargs="+", default=[15.0, 60.0], help="minutes of pretraining")
    parser.add_argument("--methods", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--data", type=Path, default=default_data(), help="folder with train/ and test/ (CIFAR-10)")
    parser.add_argument("--out", type=Path, default=RESULTS / "learn")
    parser.add_argument("--max-train", type=int, help="cap the k-NN memory set (default: all of train/)")
    parser.add_argument("--max-val", type=int, help="cap the k-NN queries (default: all of test/)")
    parser.add_argument(
        "--linear",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the fast linear probe (pretrained and at initialisation; default on)",
    )
    parser.add_argument("overrides", nargs="*", help="extra config overrides for every pretraining (key=value)")
    args = parser.parse_args()
    if args.data is None or not (args.data / "train").is_dir() or not (args.data / "test").is_dir():
        raise SystemExit("no CIFAR-10 folders: pass --data DIR (with train/ and test/) or set VITSSL_TEST_DATA")
    # The runs start in the repository root, and so does this script: every path it hands them is relative to that
    # root, so the files the commands write (their JSON names the run they scored) do not name the machine either.
    args.out, args.data = (Path(os.path.relpath(os.path.abspath(p), REPO)) for p in (args.out, args.data))
    os.chdir(REPO)
    threads = run_threads(args.overrides)
    args.machine = machine(threads)
    print(f"matmul rate: {args.machine['matmul_gflops']:.0f} GFLOP/s at {threads} thread(s)", flush=True)
    rows = []
    for budget in args.budgets:
        for method in args.methods:
            rows.append(one_run(method, budget, args))
            print(
                f"{method} {budget:g} min: {rows[-1]['init']:.1f} -> {rows[-1]['pretrained']:.1f} "
                f"(pixels {rows[-1]['pixels']:.1f})",
                flush=True,
            )
    rows = earlier_rows(args.out / "learn.json", rows) + rows
    text = report(rows, args)
    print(text)
    write_text(args.out / "learn.md", text)
    write_json(args.out / "learn.json", {"rows": rows, "environment": environment(threads)})
    plot(rows, args.out / "learn.png")
    print(f"wrote {args.out / 'learn.md'}, learn.json, learn.png")


if __name__ == "__main__":
    main()
