"""The ``vitssl`` command: assembles the parser from the subcommand modules and dispatches to them.

Every subcommand lives in its own module under ``vitssl.commands``, with ``register(sub)`` that adds its parser
and sets ``func``; this module only builds the parser, runs the chosen ``func`` and turns errors into one line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from vitssl import __version__
from vitssl.errors import Interrupted, VitsslError

# One module per subcommand, in the order of ``vitssl --help``. The modules import their heavy dependencies
# (torch, timm) inside ``run``, which keeps ``vitssl --help`` fast.
COMMAND_MODULES: tuple[str, ...] = (
    "vitssl.commands.pretrain",
    "vitssl.commands.knn",
    "vitssl.commands.linear",
    "vitssl.commands.attention",
    "vitssl.commands.segment",
    "vitssl.commands.finetune",
    "vitssl.commands.pca",
    "vitssl.commands.report",
    "vitssl.commands.reconstruct",
    "vitssl.commands.correspond",
    "vitssl.commands.detect",
    "vitssl.commands.shards",
    "vitssl.commands.export",
    "vitssl.commands.embed",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``vitssl`` parser with one subparser per module of :data:`COMMAND_MODULES`."""
    parser = argparse.ArgumentParser(
        prog="vitssl",
        description="Self-supervised pretraining of vision transformers (DINO, EsViT, SiT), with evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"vitssl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; returns the exit status (2 for a user error, with one line)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    warnings.filterwarnings("default", module="vitssl")
    try:
        return int(args.func(args) or 0)
    except Interrupted as exc:
        print(f"vitssl: {exc}", file=sys.stderr)
        return exc.exit_code
    except VitsslError as exc:
        print(f"vitssl: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file system refusal the command did not foresee: still one line, never a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"vitssl: error: {exc.strerror or exc}{where}; check the path and its folder", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\nvitssl: interrupted; re-run the same command to resume from the last checkpoint",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
