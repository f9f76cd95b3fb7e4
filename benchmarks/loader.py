"""Is the data path ahead of the model at every loader-worker count? (issue 15, item 3)

    python benchmarks/loader.py [--workers 0 1 2] [--batches 20] [--repeats 3] [--data FOLDER]
        [--out benchmarks/results/loader]

On the fixed DINO workload (2 x 32 px + 6 x 16 px crops, batch 64), in one process: the model step's images/s
(pre-made batch, as in `make bench`) and, for each worker count, the images/s of the data loader alone. Each
loader repeat builds a fresh dataset, so its first pass decodes every image it reads (the lazy memory cache
starts empty): the slowest pass a run sees. Writes loader.md and loader.json under --out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    RESULTS,
    environment,
    fmt,
    markdown_table,
    recorded,
    recorded_path,
    write_json,
    write_text,
)
from throughput import loader_rate, model_step_rate  # noqa: E402
from workloads import fixed_workload  # noqa: E402

from vitssl.api import build_trainer  # noqa: E402
from vitssl.config import load_config  # noqa: E402


def trainer_for(data: str, workers: int, out: str):
    workload = fixed_workload(False)
    overrides = [*workload.vitssl_overrides(), f"data.train={data}", f"data.num_workers={workers}"]
    overrides += ["data.val=null", "train.progress=false", f"train.out_dir={out}"]
    trainer = build_trainer(load_config(workload.base_config, overrides))
    trainer.method.train()
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader worker counts")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per loader repeat")
    parser.add_argument("--steps", type=int, default=3, help="timed model steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats; medians are reported")
    default_data = os.environ.get("VITSSL_TEST_DATA")
    parser.add_argument(
        "--data", default=f"{default_data}/cifar10/train" if default_data else "synthetic", help="image folder"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "loader")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        model = [model_step_rate(trainer_for(args.data, 0, tmp), args.steps) for _ in range(args.repeats)]
        loaders = {
            w: [loader_rate(trainer_for(args.data, w, tmp), args.batches) for _ in range(args.repeats)]
            for w in args.workers
        }
    step = statistics.median(model)
    rows = [["model step (pre-made batch)", fmt(step, 1), ""]]
    rows += [
        [
            f"data loader only, {w} worker(s), first pass",
            fmt(statistics.median(r), 1),
            f"{statistics.median(r) / step:.1f}x",
        ]
        for w, r in loaders.items()
    ]
    env = environment(torch.get_num_threads())
    command = recorded([sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]])
    data = recorded_path(args.data)
    text = (
        f"# Data path vs model step ({fixed_workload(False).describe()})\n\n`{command}`, data `{data}`, "
        f"medians of {args.repeats}, {env['machine']['cpu']}, "
        f"commit {str(env['commit'])[:10]}, {env['date_utc']}\n\n"
        + markdown_table(["measurement", "images/s", "ahead of the model by"], rows)
        + "\n"
    )
    print(text)
    write_text(args.out / "loader.md", text)
    write_json(args.out / "loader.json", {"environment": env, "model_step": model, "loader": loaders, "data": data})


if __name__ == "__main__":
    main()
