"""The ``vitssl`` command: assembles the parser from the subcommand modules and dispatches to them.

Every subcommand lives in its own module under ``vitssl.commands``, with ``register(sub)`` that adds its parser
and sets ``func``; this module only builds the parser, runs the chosen ``func`` and turns errors into one line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from vitssl import __version__
from vitssl.errors import Interrupted, VitsslError
from vitssl.log import configure as configure_logging

# One module per subcommand, in the order of ``vitssl --help``. The modules import their heavy dependencies
# (torch, timm) inside ``run``, which keeps ``vitssl --help`` fast.
COMMAND_MODULES: tuple[str, ...] = (
    "vitssl.commands.pretrain",
    "vitssl.commands.presets",
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


class IntermixedParser(argparse.ArgumentParser):
    """An argument parser whose options may stand anywhere among its positional arguments.

    Plain argparse takes a run of positionals in one go, so a variable-count positional (``pretrain``'s overrides,
    ``attention``'s images) ends at the first option and whatever follows the option is "unrecognized" (in
    ``vitssl pretrain demo --fresh optim.epochs=1``, the override). This parser parses the options first and the
    positionals after (``parse_known_intermixed_args``). A parser that cannot be parsed so (one with subcommands:
    ``vitssl`` itself) parses as usual; its subcommands' parsers are of this class too and intermix.
    """

    _intermixing = False  # set while parse_known_intermixed_args runs its own passes through parse_known_args

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing or not self._can_intermix():
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def _can_intermix(self) -> bool:
        """What ``parse_known_intermixed_args`` accepts: no subcommands or remainder, no positional in a
        mutually exclusive group."""
        positionals = self._get_positional_actions()
        if any(action.nargs in (argparse.PARSER, argparse.REMAINDER) for action in positionals):
            return False
        return not any(a in positionals for group in self._mutually_exclusive_groups for a in group._group_actions)


def build_parser() -> argparse.ArgumentParser:
    """The ``vitssl`` parser with one subparser per module of :data:`COMMAND_MODULES` (each an
    :class:`IntermixedParser`, so that options may stand anywhere among a subcommand's positionals)."""
    parser = IntermixedParser(
        prog="vitssl",
        description="Self-supervised pretraining of vision transformers (DINO, EsViT, SiT), with evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"vitssl {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-q", "--quiet", action="store_const", const=-1, dest="verbosity", help="only warnings and errors"
    )
    verbosity.add_argument(
        "-v", "--verbose", action="store_const", const=1, dest="verbosity", help="also debug messages"
    )
    parser.set_defaults(verbosity=0)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def _one_line_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """vitssl's own warnings as one line each (they name the problem and the fix; the source line adds nothing),
    everyone else's in Python's format."""
    if f"{os.sep}vitssl{os.sep}" in str(filename):
        return f"vitssl: warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


_python_format = warnings.formatwarning


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line. An error raised in a data-loader worker reaches the main process
    re-raised with the worker's traceback folded into its message; the error's own line is the last one."""
    message = str(exc)
    if "\nOriginal Traceback" not in message:
        return message
    last = message.strip().splitlines()[-1]
    name = f"{type(exc).__name__}: "
    return last.split(name, 1)[1] if name in last else last


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; returns the exit status (2 for a user error, with one line)."""
    parser = build_parser()
    configure_logging(0)  # parsing may already warn (a deprecated flag)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging(args.verbosity)
    warnings.filterwarnings("default", module="vitssl")
    warnings.formatwarning = _one_line_warning
    try:
        return int(args.func(args) or 0)
    except Interrupted as exc:
        if exc.report:
            print(f"vitssl: {exc}", file=sys.stderr)
        return exc.exit_code
    except VitsslError as exc:
        print(f"vitssl: error: {one_line(exc)}", file=sys.stderr)
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
