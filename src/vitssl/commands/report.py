"""``vitssl report RUN``: one self-contained HTML page about a run."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
examples:
  vitssl report runs/demo
  vitssl report runs/cifar --out /tmp/cifar_report

Run the evaluations first (vitssl knn / linear / finetune / segment / attention --score / pca): the page shows
every result and picture it finds in the run folder. Open RUN/report/index.html in any browser; the folder is
self-contained (the PNGs sit next to the page), so it can be copied or archived on its own."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="one self-contained HTML page: config, curves, evaluation results and pictures of a run",
        description="Write RUN/report/index.html with the resolved config, training curves (loss parts, lr, "
        "weight decay, teacher momentum and temperature, entropy diagnostics, online k-NN), the evaluation "
        "results found in the run folder (k-NN, linear probe, fine-tuning, segmentation, attention Jaccard) and "
        "its pictures (attention maps, PCA, reconstructions), plus the PNGs it uses.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN", help="a run folder written by vitssl pretrain")
    p.add_argument("--out", type=Path, help="folder for index.html and its PNGs (default: RUN/report)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitssl.report.page import build_report

    page = build_report(args.run_dir, args.out)
    print(f"wrote {page}")
    return 0
