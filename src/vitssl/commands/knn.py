"""``vitssl knn``: weighted k-NN of a pretrained (and optionally the freshly initialised) backbone."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitssl.commands._shared import (
    add_checkpoint,
    add_device,
    add_init_comparison,
    add_strict,
    load_source,
    positive_float,
    positive_int,
    results_dir,
    with_bad_inputs,
)

# the real imports stay inside the functions, so that ``vitssl --help`` stays fast
from vitssl.log import logger

DEFAULT_KS = (10, 20, 100, 200)

EPILOG = """\
examples:
  vitssl knn runs/demo
  vitssl knn runs/cifar/last.pt --train cifar10/train --val cifar10/test --k 20 --compare-init --pixels"""


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
        type=positive_int,
        nargs="+",
        help="numbers of neighbours, each at most the memory set's size; 20 is the usual headline number "
        "(default: those of 10 20 100 200 that the memory set allows)",
    )
    p.add_argument(
        "--temperature",
        type=positive_float,
        default=0.07,
        help="T of the exp(sim/T) vote weights; lower trusts the nearest neighbours more (default 0.07)",
    )
    p.add_argument("--max-train", type=positive_int, help="cap the memory set (fixed stratified subset) to save time")
    p.add_argument("--max-val", type=positive_int, help="cap the query set (fixed stratified subset)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per forward pass (default 256)")
    add_device(p)
    add_init_comparison(p, "evaluate (and plot)")
    p.add_argument(
        "--pixels",
        action="store_true",
        help="also score the raw pixels (each image normalised and flattened, same k-NN): the baseline that "
        "pretrained features must beat to be worth anything",
    )
    p.add_argument("--out", type=Path, help="JSON file for the results (default: RUN/knn.json)")
    add_strict(p)
    p.set_defaults(func=with_bad_inputs(run))


def run(args: argparse.Namespace) -> int:
    import torch

    from vitssl import distributed as dist
    from vitssl.device import resolve_device
    from vitssl.eval.knn import format_knn_table
    from vitssl.eval.knn_eval import KNNSettings, RawPixels, knn_of_backbone, knn_on_datasets, save_knn_json
    from vitssl.eval.loading import labelled_sets

    device = str(dist.init_from_env(resolve_device(args.device, "--device")))
    cfg, backbone = load_source(args, device=device)
    # the sets are built once for both networks, and --k is checked against the memory set before any extraction
    memory, queries = labelled_sets(cfg, args.train, args.val, args.max_train, args.max_val, "evaluate on")
    settings = KNNSettings(
        train=args.train,
        val=args.val,
        ks=_neighbour_counts(args.k, len(memory)),
        temperature=args.temperature,
        max_train=args.max_train,
        max_val=args.max_val,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=device,  # under torchrun every process extracts its share of the images; rank 0 reports
    )
    results: dict[str, dict] = {"pretrained": knn_of_backbone(backbone, memory, queries, settings)}
    if args.compare_init:
        _, init = load_source(args, at_init=True, device=device)
        results["init"] = knn_of_backbone(init, memory, queries, settings)
    if args.pixels:
        s = settings
        results["pixels"] = knn_on_datasets(
            RawPixels(),
            memory,
            queries,
            s.ks,
            batch_size=s.batch_size,
            num_workers=s.num_workers,
            device=torch.device(device),
            temperature=s.temperature,
            progress=True,
        )
    if not dist.is_main():
        return 0
    print(format_knn_table(results["pretrained"], title=f"weighted k-NN, pretrained ({args.source})"))
    if "init" in results:
        print(format_knn_table(results["init"], title="weighted k-NN, same network at initialisation"))
    if "pixels" in results:
        print(format_knn_table(results["pixels"], title="weighted k-NN, raw pixels (normalised, flattened)"))
    from vitssl.engine.run_files import KNN

    out = args.out or results_dir(args) / KNN
    save_knn_json(results, out, {"checkpoint": str(args.source), "temperature": args.temperature})
    if args.compare_init or args.pixels:
        _plot_comparison(results, out)
    logger.info(f"wrote {out}")
    return 0


def _neighbour_counts(ks: list[int] | None, memory_size: int) -> tuple[int, ...]:
    """The k values to evaluate: ``--k`` as given, or the defaults the memory set allows. A k above the memory set
    would silently be clamped to it, so an explicit one is refused, naming the fix."""
    from vitssl.errors import VitsslError

    if ks is None:
        ks = [k for k in DEFAULT_KS if k <= memory_size]
        if not ks:
            raise VitsslError(
                f"the memory set (--train) has only {memory_size} images, fewer than the smallest default k "
                f"({DEFAULT_KS[0]}); pass --k values <= {memory_size}"
            )
    too_large = [k for k in ks if k > memory_size]
    if too_large:
        raise VitsslError(
            f"--k {' '.join(map(str, too_large))} exceeds the {memory_size} images of the memory set (--train); "
            f"pass --k values <= {memory_size} or a larger --train / --max-train"
        )
    return tuple(ks)


def _plot_comparison(results: dict[str, dict], out: Path) -> None:
    """``knn_comparison.png`` next to the JSON: raw pixels and initialisation (when scored) against pretrained."""
    from vitssl.report.plots import plot_knn_comparison

    order = ("pixels", "init", "pretrained")
    plot_knn_comparison({name: results[name] for name in order if name in results}, out.with_name("knn_comparison.png"))
