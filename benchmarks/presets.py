"""Model-step throughput of several presets side by side (forward, backward and update on a fixed batch).

    python benchmarks/presets.py [--steps 8] [--repeats 3] [CONFIG ...]

Every preset runs on the built-in synthetic 32 px images (the step's cost does not depend on the pixels), so no
data set is needed. Prints a table and writes it to benchmarks/results/presets.md; quotes the median of the
repeats (the machines are shared and noisy) with min and max.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, environment  # noqa: E402
from throughput import model_step_rate  # noqa: E402
from workloads import PRESETS  # noqa: E402

from vitssl.api import build_trainer  # noqa: E402
from vitssl.config import load_config  # noqa: E402
from vitssl.engine.trainer import Trainer  # noqa: E402

DEFAULT_PRESETS = list(PRESETS.values())


def describe(trainer: Trainer) -> str:
    """``method / backbone (parameters), crops`` of a trainer's run."""
    cfg = trainer.cfg
    params = sum(p.numel() for p in trainer.method.eval_backbone().parameters()) / 1e6
    return f"{cfg.method} / {cfg.model.backbone} ({params:.1f} M), {len(trainer.method.views)} crops"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", default=DEFAULT_PRESETS)
    parser.add_argument("--steps", type=int, default=8, help="timed optimiser steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats; the median is reported")
    parser.add_argument("--out", type=Path, default=RESULTS / "presets.md")
    args = parser.parse_args()
    rows = []
    for config in args.configs:
        overrides = ["data.train=synthetic", "data.val=null", "train.out_dir=/tmp/vitssl-bench-presets"]
        cfg = load_config(config, [*overrides, "train.progress=false", "data.num_workers=0"])
        trainer = build_trainer(cfg)
        trainer.method.train()
        rates = [model_step_rate(trainer, args.steps) for _ in range(args.repeats)]
        rows.append((config, describe(trainer), statistics.median(rates), min(rates), max(rates)))
        print(f"{config}: {rows[-1][2]:.1f} images/s", file=sys.stderr)
    env = environment(torch.get_num_threads())
    header = (
        f"model step (forward + backward + update, batch of the preset, fixed views), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {env['machine']['cpu']}, commit {str(env['commit'])[:10]}, "
        f"median of {args.repeats} x {args.steps} steps"
    )
    table = ["| preset | method / backbone | images/s (median) | min | max |", "|---|---|---|---|---|"]
    table += [f"| `{c}` | {d} | {m:.1f} | {lo:.1f} | {hi:.1f} |" for c, d, m, lo, hi in rows]
    text = header + "\n\n" + "\n".join(table) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
