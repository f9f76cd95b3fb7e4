"""Before/after numbers of the training-speed options (issue 15, item 3) on one workload, each variant in its own
process (peak memory is per process), variants interleaved round by round (the machines drift by +-10 %).

    python benchmarks/options.py [--workload fixed] [--rounds 2] [--steps 4] [--variants fused explicit ...]
        [--out benchmarks/results/options]

Variants (config overrides on top of the workload):
    fused          model.attention=fused (torch's scaled_dot_product_attention)
    explicit       model.attention=explicit (softmax(q k^T) v as matrix products)
    checkpointing  explicit + model.grad_checkpointing=true (activation checkpointing)
    compiled       explicit + train.compile=true (the first step, which compiles, is timed apart)
    device_checks  explicit + train.nonfinite_check=device (fused AdamW, the skip decided on the device: no
                   host read per step; on a CPU this times only the fused optimiser and the gating)

Writes options.md and options.json under --out: per variant the median model-step images/s, the ratio to the
first variant, peak RSS and (compiled) the seconds of the compiling step.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    RESULTS,
    environment,
    fmt,
    markdown_table,
    peak_rss_mib,
    rate_from_step_times,
    recorded,
    run_worker,
    worker_env,
    write_json,
    write_text,
)

VARIANTS: dict[str, list[str]] = {
    "fused": ["model.attention=fused"],
    "explicit": ["model.attention=explicit"],
    "checkpointing": ["model.attention=explicit", "model.grad_checkpointing=true"],
    "compiled": ["model.attention=explicit", "train.compile=true"],
    "device_checks": ["model.attention=explicit", "train.nonfinite_check=device"],
}


def worker(args: argparse.Namespace) -> None:
    """One variant in this process: build, time the first (compiling) step, then ``steps`` model steps."""
    import torch
    from measure import build
    from throughput import fixed_batch, repeat_batch, step_times

    torch.set_num_threads(args.threads)
    args.data, args.e2e_steps = args.data or "synthetic", 1
    with tempfile.TemporaryDirectory(prefix="vitssl-options-") as out_dir:
        trainer, *_ = build(args, out_dir)
        fixed = repeat_batch(fixed_batch(trainer))
        start = time.perf_counter()
        trainer.optimizer_step(fixed, trainer.state_at(0))  # warm-up (compiles when train.compile is on)
        first = time.perf_counter() - start
        trainer.optimizer_step(fixed, trainer.state_at(0))  # a second warm-up: a recompile for another shape
        times = step_times(trainer, fixed, args.steps)
        write_json(
            args.json_out,
            {
                "first_step_seconds": first,
                "model_step_seconds": times,
                "model_step_images_per_s": rate_from_step_times(trainer.images_per_step, times),
                "peak_rss_mib": peak_rss_mib(),
            },
        )


def run_variants(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in args.variants}
    with tempfile.TemporaryDirectory(prefix="vitssl-options-") as tmp:
        for r in range(args.rounds):
            for variant in args.variants:
                json_out = Path(tmp) / f"{variant}-{r}.json"
                cmd = [sys.executable, __file__, "--worker", "--json-out", str(json_out), "--workload", args.workload]
                cmd += ["--steps", str(args.steps), "--threads", str(args.threads)]
                cmd += [*(["--data", args.data] if args.data else []), *(["--toy"] if args.toy else [])]
                result = run_worker([*cmd, *VARIANTS[variant]], json_out, env=worker_env(args.threads))
                results[variant].append(result)
                print(f"round {r + 1}: {variant} {result.get('model_step_images_per_s', float('nan')):.2f} images/s")
    return results


def summarise(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    base = None
    for variant, runs in results.items():
        times = [t for run in runs for t in run.get("model_step_seconds", [])]
        rate = statistics.median([run["model_step_images_per_s"] for run in runs]) if times else float("nan")
        base = rate if base is None else base
        rows.append(
            {
                "variant": variant,
                "overrides": VARIANTS[variant],
                "model_step_images_per_s": rate,
                "ratio_to_first": rate / base,
                "peak_rss_mib": statistics.median([run["peak_rss_mib"] for run in runs]),
                "first_step_seconds": statistics.median([run["first_step_seconds"] for run in runs]),
                "rounds": len(runs),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default="fixed", help="fixed or a preset name (benchmarks/workloads.py)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; medians over them")
    parser.add_argument("--steps", type=int, default=4, help="timed model steps per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=None, help="image folder for the fixed batch (default: synthetic)")
    parser.add_argument("--toy", action="store_true", help="toy sizes (smoke tests)")
    parser.add_argument("--out", type=Path, default=RESULTS / "options")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.device, args.matmul_repeats, args.repeats = "cpu", 1, 1
    if args.worker:
        worker(args)
        return
    rows = summarise(run_variants(args))
    header = ["variant", "overrides", "model step images/s", "vs first", "peak RSS MiB", "first step s"]
    table = markdown_table(
        header,
        [
            [
                r["variant"],
                " ".join(r["overrides"]),
                fmt(r["model_step_images_per_s"], 2),
                fmt(r["ratio_to_first"], 2),
                fmt(r["peak_rss_mib"], 0),
                fmt(r["first_step_seconds"], 1),
            ]
            for r in rows
        ],
    )
    command = recorded([sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])
    text = f"# Training-speed options, workload `{args.workload}`\n\n`{command}`\n\n{table}\n"
    print(text)
    write_text(args.out / "options.md", text)
    write_json(args.out / "options.json", {"workload": args.workload, "rows": rows, "environment": environment()})


if __name__ == "__main__":
    main()
