"""Measure one workload with vitssl in this process; write the result as JSON (a worker of benchmarks/bench.py).

    python benchmarks/measure.py --workload fixed|dino_vit_tiny|... --json-out FILE [--steps 4] [--repeats 2]
        [--e2e-steps 4] [--threads 2] [--data FOLDER] [--toy] [key=value ...]

In one process, in this order: build the trainer on the image folder (``--data``; default
``$VITSSL_TEST_DATA/cifar10/train`` when set, else the built-in ``synthetic`` set); take its first batch as the
fixed, pre-made input; one warm-up step; one step counted by ``torch.utils.flop_counter.FlopCounterMode`` that
also records its GEMMs; ``repeats`` x ``steps`` timed model steps (forward + backward + update, no data);
the recorded GEMMs replayed on their own (the matmul rate of this model's shapes); ``e2e-steps`` timed steps
with the data loader (the preset's workers); peak RSS after the model steps and at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO,
    environment,
    peak_rss_mib,
    rate_from_step_times,
    recorded_path,
    recorded_token,
    spread,
    write_json,
)
from flops import count_step, matmul_rate, square_matmul_gflops  # noqa: E402
from throughput import end_to_end_times, fixed_batch, repeat_batch, step_times  # noqa: E402
from workloads import FIXED, PRESETS, fixed_workload, preset_overrides  # noqa: E402

from vitssl.api import build_trainer  # noqa: E402
from vitssl.config import load_config  # noqa: E402
from vitssl.engine.trainer import Trainer  # noqa: E402

TEMPORARY_FOLDER = "<temporary folder>"


def default_data() -> str:
    """``$VITSSL_TEST_DATA/cifar10/train`` when the variable is set, else the built-in synthetic set."""
    base = os.environ.get("VITSSL_TEST_DATA")
    return str(Path(base) / "cifar10" / "train") if base else "synthetic"


def workload_config(name: str, toy: bool) -> tuple[str, list[str], str]:
    """(config file, overrides, description) of the workload ``name``."""
    if name == FIXED:
        work = fixed_workload(toy)
        return work.base_config, work.vitssl_overrides(), work.describe()
    if name not in PRESETS:
        raise SystemExit(f"unknown workload {name!r}; choose from {FIXED}, {', '.join(PRESETS)}")
    return PRESETS[name], preset_overrides(name, toy), f"preset {PRESETS[name]}"


def build(args: argparse.Namespace, out_dir: str) -> tuple[Trainer, str, list[str], str]:
    """The trainer of the workload, on ``args.data``, with just enough images for the end-to-end steps."""
    config, overrides, description = workload_config(args.workload, args.toy)
    batch = load_config(REPO / config, overrides).data.batch_size
    run = [
        f"data.train={args.data}",
        "data.val=null",
        f"data.max_images={batch * (args.e2e_steps + 2)}",
        f"train.threads={args.threads}",
        f"train.device={args.device}",
        f"train.out_dir={out_dir}",
        "train.progress=false",
        *(["data.num_workers=0"] if args.toy else []),
    ]
    all_overrides = [*overrides, *run, *args.overrides]
    trainer = build_trainer(load_config(REPO / config, all_overrides))
    trainer.method.train()
    return trainer, config, all_overrides, description


def model_step_metrics(
    trainer: Trainer, steps: int, repeats: int, matmul_repeats: int, square_size: int = 2048
) -> dict[str, Any]:
    """Model step (fixed, pre-made batch): step times, FLOPs, the matmul rate of the step's own GEMMs (in the
    dtype the step ran them in) and the utilisation, measured in this order in this process."""
    fixed = repeat_batch(fixed_batch(trainer))
    trainer.optimizer_step(fixed, trainer.state_at(0))  # warm-up
    counted = count_step(lambda: trainer.optimizer_step(fixed, trainer.state_at(0)))
    times = [t for _ in range(repeats) for t in step_times(trainer, fixed, steps)]
    rss = peak_rss_mib()
    matmul = matmul_rate(counted.gemms, repeats=matmul_repeats)
    dtype = trainer.precision.dtype or torch.float32
    square = square_matmul_gflops(n=square_size, dtype=dtype, device=str(trainer.device), repeats=5)
    median = statistics.median(times)
    achieved = counted.flops / median / 1e9
    return {
        "images_per_step": trainer.images_per_step,
        "crops": len(trainer.method.views),
        "model_step_seconds": times,
        "model_step_images_per_s": rate_from_step_times(trainer.images_per_step, times),
        "model_step_seconds_spread": spread(times),
        **counted.summary(),
        "achieved_gflops": achieved,
        "matmul_gflops": matmul["gflops"],
        "gemm_seconds_per_step_at_matmul_rate": matmul["seconds_per_step"],
        "gemm_share_of_step": matmul["seconds_per_step"] / median,
        "square_matmul_size": square_size,
        "square_matmul_gflops": square,
        "utilisation": achieved / matmul["gflops"],
        "peak_rss_mib_model_step": rss,
    }


def measure(trainer: Trainer, args: argparse.Namespace) -> dict[str, Any]:
    """Model step, FLOPs, matmul rate, end to end and peak memory of ``trainer``'s workload."""
    step = model_step_metrics(trainer, args.steps, args.repeats, args.matmul_repeats, 512 if args.toy else 2048)
    e2e_times = end_to_end_times(trainer, args.e2e_steps)
    e2e_rate = rate_from_step_times(trainer.images_per_step, e2e_times)
    return {
        "num_workers": trainer.cfg.data.num_workers,
        **step,
        "end_to_end_seconds": e2e_times,
        "end_to_end_images_per_s": e2e_rate,
        "end_to_end_over_model_step": e2e_rate / step["model_step_images_per_s"],
        "peak_rss_mib": peak_rss_mib(),
    }


def recorded_override(override: str, out_dir: str) -> str:
    """``override`` as the result lists it: the run folder (made for this measurement and deleted after it) as
    ``<temporary folder>``, any other path as :func:`common.recorded_token` writes it."""
    if override == f"train.out_dir={out_dir}":
        return f"train.out_dir={TEMPORARY_FOLDER}"
    return recorded_token(override)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", default=FIXED, help=f"{FIXED} or a preset: {', '.join(PRESETS)}")
    parser.add_argument("--json-out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=4, help="timed model steps per repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--e2e-steps", type=int, default=4, help="timed end-to-end steps")
    parser.add_argument("--matmul-repeats", type=int, default=3, help="replays of the step's GEMMs (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default=default_data(), help="image folder or named set for the end-to-end steps")
    parser.add_argument("--toy", action="store_true", help="toy sizes (smoke tests)")
    parser.add_argument("overrides", nargs="*", help="extra config overrides")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    out_dir = tempfile.mkdtemp(prefix="vitssl-bench-")
    try:
        trainer, config, overrides, description = build(args, out_dir)
        result = {
            "workload": args.workload,
            "implementation": "vitssl",
            "config": config,
            "overrides": [recorded_override(o, out_dir) for o in overrides],
            "description": description,
            "data": recorded_path(args.data),
            **measure(trainer, args),
            "environment": environment(torch.get_num_threads()),
        }
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    write_json(args.json_out, result)
    print(
        f"{args.workload}: model step {result['model_step_images_per_s']:.1f} images/s, "
        f"utilisation {result['utilisation']:.0%}, end to end / model step "
        f"{result['end_to_end_over_model_step']:.2f}, peak RSS {result['peak_rss_mib']:.0f} MiB",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
