"""``vitssl pretrain``: self-supervised pretraining from a YAML config with command-line overrides."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vitssl.config import PretrainConfig
    from vitssl.engine.trainer import FitResult

EPILOG = """\
examples:
  vitssl pretrain demo
  vitssl pretrain dino/vit_tiny_cifar10 data.train=/data/cifar10/train optim.epochs=50
  vitssl pretrain dino/vit_small_imagenet data.train=/data/imagenet/train data.batch_size=64
  vitssl pretrain my_recipe.yaml
  torchrun --nproc_per_node=8 -m vitssl pretrain dino/vit_small_imagenet ...

Re-running the same command on the same run folder resumes from its last checkpoint.
Run `vitssl pretrain` alone for the list of presets, `vitssl pretrain --help-config` for every key with its
default and tuning advice."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining from a YAML config",
        description="Pretrain a vision transformer without labels. Writes config.yaml, metrics.jsonl, TensorBoard "
        "logs, checkpoints (last.pt), curves.png and the online k-NN into the run folder.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config",
        nargs="?",
        help="a preset's name (`vitssl presets` lists them, e.g. dino/vit_small_imagenet) or a YAML file",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="override any config key, e.g. optim.lr=1e-3 data.batch_size=128 (values are YAML)",
    )
    p.add_argument("--help-config", action="store_true", help="list every config key with its default and help")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument(
        "--fresh",
        action="store_true",
        help="start a new run even if the run folder holds one: train in RUN-2 (RUN-3, ...) and leave RUN untouched",
    )
    resume.add_argument(
        "--no-resume",
        action="store_true",
        help="stop with an error instead of resuming when the run folder already holds a checkpoint",
    )
    p.set_defaults(func=run, print_usage=p.print_usage)


def run(args: argparse.Namespace) -> int:
    if args.help_config:
        _print_config_help()
        return 0
    if args.config is None and not args.overrides:
        # training the built-in defaults by accident would start a run nobody asked for: show what to pass
        args.print_usage(sys.stdout)
        _print_presets()
        print("vitssl: error: no config given; pass one of the presets above (or key=value overrides)", file=sys.stderr)
        return 2
    from vitssl.config import load_config

    if args.config is not None and "=" in args.config:  # only overrides were given
        args.overrides.insert(0, args.config)
        args.config = None
    cfg = load_config(args.config, args.overrides)
    cfg = _resume_policy(cfg, fresh=args.fresh, no_resume=args.no_resume)
    result = _train(cfg)
    from vitssl import distributed as dist

    if not dist.is_main():
        return 0  # one "finished" line per run, not per process
    if result.already_finished:
        print(
            f"run {result.run_dir} is already finished: step {result.steps}, final loss {result.final_loss:.4f}; "
            f"its results are in {result.run_dir} (use --fresh to train it again in a new folder)"
        )
        return 0
    print(f"finished {result.steps} steps; final loss {result.final_loss:.4f}; run folder {result.run_dir}")
    if result.knn is not None:
        k = cfg.train.knn_k
        print(f"online {k}-NN top-1: {result.knn[k]['top1']:.2f}%")
    return 0


def _resume_policy(cfg: PretrainConfig, fresh: bool, no_resume: bool) -> PretrainConfig:
    from vitssl.api import fresh_run_dir
    from vitssl.checkpoints import holds_checkpoint
    from vitssl.errors import VitsslError

    if fresh:
        return fresh_run_dir(cfg)
    if no_resume and holds_checkpoint(cfg.run_dir):
        raise VitsslError(
            f"{cfg.run_dir} already holds a run and --no-resume was given; drop the flag to resume it, use --fresh "
            "for a new folder, or set train.out_dir"
        )
    return cfg


def _train(cfg: PretrainConfig) -> FitResult:
    """Build the trainer for ``cfg`` and run it to the end (resuming from the run folder's last checkpoint)."""
    from vitssl.api import train

    return train(cfg)


def _print_presets() -> None:
    from vitssl.commands.presets import format_presets

    print("\npresets (vitssl pretrain NAME [key=value ...]; a YAML file path works too):")
    print("\n".join(f"  {line}" for line in format_presets().splitlines()))


def _print_config_help() -> None:
    from vitssl.config import describe

    for key, default, help_text in describe():
        print(f"{key} = {default}")
        print(textwrap.indent(textwrap.fill(help_text, 100), "    "))
