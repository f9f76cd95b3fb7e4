"""Training throughput of a preset: the model step alone (pre-made views) and end to end (data loader).

    python benchmarks/throughput.py [--config configs/dino/vit_tiny_cifar10.yaml] [--steps 10] [--repeats 3]
        [key=value ...]

Prints a table and writes it to benchmarks/results/throughput.md. Quotes medians over repeats: the machines
are shared and noisy. The end-to-end number uses the preset's data (override data.train for a local folder).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, environment, recorded  # noqa: E402
from flops import synchronize  # noqa: E402

from vitssl.api import build_trainer  # noqa: E402
from vitssl.config import load_config  # noqa: E402
from vitssl.data.batches import ViewBatch  # noqa: E402
from vitssl.engine.trainer import Trainer  # noqa: E402


def step_times(trainer: Trainer, batches: Iterator[ViewBatch], steps: int) -> list[float]:
    """Seconds of each of ``steps`` optimiser steps (schedules applied as in training; the device is
    synchronised around each step, so GPU work is counted where it is queued)."""
    times = []
    for step in range(steps):
        state = trainer.state_at(step)
        trainer.apply_state(state)
        synchronize(trainer.device)
        start = time.perf_counter()
        trainer.optimizer_step(batches, state)
        synchronize(trainer.device)
        times.append(time.perf_counter() - start)
    return times


def _clone(batch: ViewBatch) -> ViewBatch:
    """A copy of every tensor of a batch (views, and whatever else the method's batch holds: SiT's targets)."""
    return batch.apply(torch.clone)


def fixed_batch(trainer: Trainer) -> ViewBatch:
    """The first batch of the training data, on the trainer's device: the pre-made input of the model step."""
    return next(trainer.batches_from(0, 0)).to(trainer.device)


def repeat_batch(batch: ViewBatch) -> Iterator[ViewBatch]:
    """``batch`` again and again (a fresh copy each time: a method may write into its inputs)."""
    return iter(lambda: _clone(batch), None)


def model_step_times(trainer: Trainer, steps: int, batch: ViewBatch | None = None) -> list[float]:
    """Seconds per step of forward + backward + update on one fixed, pre-made batch (no data loading), after one
    warm-up step."""
    fixed = repeat_batch(batch if batch is not None else fixed_batch(trainer))
    trainer.optimizer_step(fixed, trainer.state_at(0))  # warm-up
    return step_times(trainer, fixed, steps)


def model_step_rate(trainer: Trainer, steps: int, batch: ViewBatch | None = None) -> float:
    """Images/s of forward + backward + update on one fixed, pre-made batch (no data loading)."""
    return trainer.images_per_step * steps / sum(model_step_times(trainer, steps, batch))


def end_to_end_times(trainer: Trainer, steps: int) -> list[float]:
    """Seconds per step including the data loader (decode, views, collate) with the configured workers, after
    one warm-up step that starts the workers."""
    batches = trainer.batches_from(0, 0)
    trainer.optimizer_step(batches, trainer.state_at(0))
    return step_times(trainer, batches, steps)


def end_to_end_rate(trainer: Trainer, steps: int) -> float:
    """Images/s including the data loader (decode, multi-crop, collate) with the configured workers."""
    return trainer.images_per_step * steps / sum(end_to_end_times(trainer, steps))


def loader_rate(trainer: Trainer, steps: int) -> float:
    """Images/s the data loader alone delivers (what the model could at most consume)."""
    batches = trainer.batches_from(0, 0)
    next(batches)
    start = time.perf_counter()
    for _ in range(steps):
        next(batches)
    return trainer.cfg.data.batch_size * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/dino/vit_tiny_cifar10.yaml")
    parser.add_argument("--steps", type=int, default=10, help="timed optimiser steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats; the median is reported")
    parser.add_argument("--out", type=Path, default=RESULTS / "throughput.md")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(
        args.config, [*args.overrides, "train.out_dir=/tmp/vitssl-bench", "train.progress=false", "data.val=null"]
    )
    trainer = build_trainer(cfg)
    trainer.method.train()
    rows = []
    for name, fn in (
        ("model step only", model_step_rate),
        ("end to end (loader + step)", end_to_end_rate),
        ("data loader only", loader_rate),
    ):
        rates = [fn(trainer, args.steps) for _ in range(args.repeats)]
        rows.append((name, statistics.median(rates), min(rates), max(rates)))
    env = environment(torch.get_num_threads())
    header = (
        f"config `{args.config}` {recorded(args.overrides)} — batch {cfg.data.batch_size}, "
        f"{len(trainer.method.views)} crops, workers {cfg.data.num_workers}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {env['machine']['cpu']}, commit {str(env['commit'])[:10]}, "
        f"median of {args.repeats} x {args.steps} steps"
    )
    table = ["| measurement | images/s (median) | min | max |", "|---|---|---|---|"]
    table += [f"| {n} | {m:.1f} | {lo:.1f} | {hi:.1f} |" for n, m, lo, hi in rows]
    text = header + "\n\n" + "\n".join(table) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
