"""The ``vitssl`` command: one subcommand per job. Parsing only; each subcommand calls one library function."""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
import warnings
from pathlib import Path

from vitssl import __version__
from vitssl.errors import VitsslError

EPILOG_PRETRAIN = """\
examples:
  vitssl pretrain configs/demo.yaml
  vitssl pretrain configs/dino/vit_tiny_cifar10.yaml data.train=/data/cifar10/train optim.epochs=50
  vitssl pretrain configs/dino/vit_small_imagenet.yaml data.train=/data/imagenet/train data.batch_size=64
  torchrun --nproc_per_node=8 -m vitssl pretrain configs/dino/vit_small_imagenet.yaml ...

Re-running the same command on the same run folder resumes from its last checkpoint.
Run `vitssl pretrain --help-config` for every key with its default and tuning advice."""


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining from a YAML config",
        description="Pretrain a vision transformer without labels. Writes config.yaml, metrics.jsonl, TensorBoard "
        "logs, checkpoints (last.pt), curves.png and the online k-NN into the run folder.",
        epilog=EPILOG_PRETRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", help="YAML preset, e.g. configs/dino/vit_tiny_cifar10.yaml")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="override any config key, e.g. optim.lr=1e-3 data.batch_size=128 (values are YAML)",
    )
    p.add_argument("--help-config", action="store_true", help="list every config key with its default and help")
    p.set_defaults(func=_run_pretrain)


def _add_knn(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "knn",
        help="weighted k-NN evaluation of a pretrained backbone",
        description="Weighted k-NN classification (Wu et al. 2018, as used by DINO) on the teacher's features: "
        "each query takes the k most similar training images by cosine similarity; each neighbour "
        "votes for its class with weight exp(similarity / T). A quick, hyper-parameter-light "
        "measure of representation quality.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  vitssl knn runs/demo\n  vitssl knn runs/cifar/last.pt --train cifar10/train "
        "--val cifar10/test --k 20 --compare-init",
    )
    p.add_argument("checkpoint", help="run folder (uses its last.pt) or a checkpoint file written by vitssl")
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
    p.add_argument("--num-workers", type=int, default=2, help="data loader workers (default 2)")
    p.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda' (default auto)")
    p.add_argument(
        "--compare-init",
        action="store_true",
        help="also evaluate the same network at initialisation (same config and seed) and plot both",
    )
    p.add_argument("--out", type=Path, help="JSON file for the results (default: RUN/knn.json)")
    p.set_defaults(func=_run_knn)


# Further subcommands live in their own modules; each module has ``register(sub)`` that adds its parser and sets
# ``func``. Importing them lazily here keeps ``vitssl --help`` fast.
COMMAND_MODULES: tuple[str, ...] = (
    "vitssl.commands.linear",
    "vitssl.commands.attention",
    "vitssl.commands.segment",
    "vitssl.commands.finetune",
    "vitssl.commands.pca",
    "vitssl.commands.report",
    "vitssl.commands.reconstruct",
    "vitssl.commands.correspond",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitssl",
        description="Self-supervised pretraining of vision transformers (DINO, EsViT, SiT), with evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"vitssl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_pretrain(sub)
    _add_knn(sub)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def _print_config_help() -> None:
    from vitssl.config import describe

    for key, default, help_text in describe():
        print(f"{key} = {default}")
        print(textwrap.indent(textwrap.fill(help_text, 100), "    "))


def _run_pretrain(args: argparse.Namespace) -> int:
    if args.help_config:
        _print_config_help()
        return 0
    from vitssl.config import load_config
    from vitssl.engine.trainer import Trainer

    if args.config is not None and "=" in args.config:  # only overrides were given
        args.overrides.insert(0, args.config)
        args.config = None
    cfg = load_config(args.config, args.overrides)
    result = Trainer(cfg).fit()
    print(f"finished {result.steps} steps; final loss {result.final_loss:.4f}; run folder {result.run_dir}")
    if result.knn is not None:
        k = cfg.train.knn_k
        print(f"online {k}-NN top-1: {result.knn[k]['top1']:.2f}%")
    return 0


def _run_knn(args: argparse.Namespace) -> int:
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
        device=str(resolve_device(args.device)),
    )
    results: dict[str, dict] = {}
    cfg, method = load_method(args.checkpoint)
    results["pretrained"] = evaluate_knn(cfg, method, settings)
    print(format_knn_table(results["pretrained"], title=f"weighted k-NN, pretrained ({args.checkpoint})"))
    if args.compare_init:
        _, init = load_method(args.checkpoint, at_init=True)
        results["init"] = evaluate_knn(cfg, init, settings)
        print(format_knn_table(results["init"], title="weighted k-NN, same network at initialisation"))
    run_dir = Path(args.checkpoint) if Path(args.checkpoint).is_dir() else Path(args.checkpoint).parent
    out = args.out or run_dir / "knn.json"
    save_knn_json(results, out, {"checkpoint": str(args.checkpoint), "temperature": args.temperature})
    if args.compare_init:
        from vitssl.plots import plot_knn_comparison

        plot_knn_comparison(
            {"init": results["init"], "pretrained": results["pretrained"]},
            out.with_name("knn_comparison.png"),
        )
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    warnings.filterwarnings("default", module="vitssl")
    try:
        return int(args.func(args) or 0)
    except VitsslError as exc:
        print(f"vitssl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\nvitssl: interrupted; re-run the same command to resume from the last checkpoint",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
