"""``vitssl knn``: weighted k-NN of a pretrained (and optionally the freshly initialised) backbone."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitssl.commands._shared import add_checkpoint, add_device

EPILOG = """\
examples:
  vitssl knn runs/demo
  vitssl knn runs/cifar/last.pt --train cifar10/train --val cifar10/test --k 20 --compare-init"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "knn",
        help="weighted k-NN evaluation of a pretrained backbone",
        description="Weighted k-NN classification (Wu et al. 2018, as used by DINO) on the teacher's features: "
        "each query takes the k most similar training images by cosine similarity; each neighbour "
        "votes for its class with weight exp(similarity / T). A quick, hyper-parameter-light "
        "measure of representation quality.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    add_checkpoint(p)
    p.add_argument(
        "--train",
        help="labelled memory set: folder root/<class>/<images> or a named dataset "
        "(default: the run's data.knn_train, else its data.train when labelled)",
    )
    p.add_argument("--val", help="labelled query set (default: the run's data.val)")
    p.add_argument(
        "--k",
        type=int,
        nargs="+",
        default=[10, 20, 100, 200],
        help="numbers of neighbours; 20 is the usual headline number (default: 10 20 100 200)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=0.07,
        help="T of the exp(sim/T) vote weights; lower trusts the nearest neighbours more (default 0.07)",
    )
    p.add_argument("--max-train", type=int, help="cap the memory set (fixed stratified subset) to save time")
    p.add_argument("--max-val", type=int, help="cap the query set (fixed stratified subset)")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    add_device(p)
    p.add_argument(
        "--compare-init",
        action="store_true",
        help="also evaluate the same network at initialisation (same config and seed) and plot both",
    )
    p.add_argument("--out", type=Path, help="JSON file for the results (default: RUN/knn.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vitssl import distributed as dist
    from vitssl.checkpoints import run_dir_of
    from vitssl.device import resolve_device
    from vitssl.eval.knn import format_knn_table
    from vitssl.eval.knn_eval import KNNSettings, evaluate_knn, save_knn_json
    from vitssl.eval.loading import load_method

    settings = KNNSettings(
        train=args.train,
        val=args.val,
        ks=tuple(args.k),
        temperature=args.temperature,
        max_train=args.max_train,
        max_val=args.max_val,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        # under torchrun every process extracts its share of the images; rank 0 reports
        device=str(dist.init_from_env(resolve_device(args.device, "--device"))),
    )
    results: dict[str, dict] = {}
    cfg, method = load_method(args.checkpoint)
    results["pretrained"] = evaluate_knn(cfg, method, settings)
    if args.compare_init:
        _, init = load_method(args.checkpoint, at_init=True)
        results["init"] = evaluate_knn(cfg, init, settings)
    if not dist.is_main():
        return 0
    print(format_knn_table(results["pretrained"], title=f"weighted k-NN, pretrained ({args.checkpoint})"))
    if "init" in results:
        print(format_knn_table(results["init"], title="weighted k-NN, same network at initialisation"))
    out = args.out or run_dir_of(args.checkpoint) / "knn.json"
    save_knn_json(results, out, {"checkpoint": str(args.checkpoint), "temperature": args.temperature})
    if args.compare_init:
        _plot_comparison(results, out)
    print(f"wrote {out}")
    return 0


def _plot_comparison(results: dict[str, dict], out: Path) -> None:
    """``knn_comparison.png`` next to the JSON: initialisation against pretrained, per k."""
    from vitssl.plots import plot_knn_comparison

    plot_knn_comparison(
        {"init": results["init"], "pretrained": results["pretrained"]}, out.with_name("knn_comparison.png")
    )
