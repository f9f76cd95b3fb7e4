"""One process with 2 threads against 2 processes with 1 thread each (torchrun, gloo), same global batch.

    python benchmarks/distributed.py [--config configs/dino/vit_tiny_cifar10.yaml] [--steps 40] [--repeats 2]
        [key=value ...]

Each configuration pretrains the preset for ``--steps`` optimiser steps (global batch = the preset's batch),
started as the user would (``vitssl pretrain`` / ``torchrun -m vitssl pretrain``); the rate is the median of the
trainer's logged images/s over the steps after the first five (process start-up and warm-up excluded). The two
configurations are interleaved and repeated; medians are reported, with the ratio of the two. Prints a table and
writes it to benchmarks/results/distributed.md (and .json). Run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def run_once(config: str, overrides: list[str], processes: int, batch: int, steps: int) -> float:
    out = Path(tempfile.mkdtemp(prefix="vitssl-dist-bench-"))
    threads = max(1, 2 // processes)
    common = [
        config,
        *overrides,
        f"data.batch_size={batch // processes}",
        f"data.max_images={batch * steps}",
        "optim.epochs=1",
        "data.val=null",
        "train.log_every=1",
        "train.checkpoint_every=100000",
        f"train.threads={threads}",
        "train.progress=false",
        f"train.out_dir={out}",
    ]
    if processes == 1:
        cmd = [sys.executable, "-m", "vitssl", "pretrain", *common]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        cmd += ["-m", "vitssl", "pretrain", *common]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in records if "loss" in r][5:]
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/dino/vit_tiny_cifar10.yaml")
    parser.add_argument("--batch", type=int, default=64, help="global batch (split over the processes)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.train=/data/cifar10/train")
    args = parser.parse_args()
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for processes in (1, 2):  # interleaved, so slow phases of the shared machine hit both
            rates[processes].append(run_once(args.config, args.overrides, processes, args.batch, args.steps))
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    header = (
        f"`{args.config}` {' '.join(args.overrides)}: global batch {args.batch}, {args.steps} steps per run, "
        f"images/s = median of the logged rates after step 5, median over {args.repeats} interleaved repeats; "
        f"torch {torch.__version__}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    )
    table = [
        "| configuration | images/s | runs |",
        "|---|---|---|",
        f"| 1 process x 2 threads | {one:.1f} | {', '.join(f'{r:.1f}' for r in rates[1])} |",
        f"| 2 processes x 1 thread (torchrun, gloo, DDP) | {two:.1f} | {', '.join(f'{r:.1f}' for r in rates[2])} |",
        f"| ratio 2 / 1 | {two / one:.2f} | |",
    ]
    text = header + "\n\n" + "\n".join(table) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distributed.md").write_text(text)
    (RESULTS / "distributed.json").write_text(json.dumps({"one_process": rates[1], "two_processes": rates[2]}))


if __name__ == "__main__":
    main()
