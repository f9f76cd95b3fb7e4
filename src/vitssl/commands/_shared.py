"""What the evaluation subcommands share: their common arguments (worded and defaulted the same everywhere) and
the frame of loading a run's backbone, running a protocol on it and reporting the files written."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the real imports stay inside the functions, so that ``vitssl --help`` stays fast
    from vitssl.config import PretrainConfig
    from vitssl.models.backbones import Backbone


def add_checkpoint(p: argparse.ArgumentParser) -> None:
    """The positional run folder or checkpoint file."""
    p.add_argument("checkpoint", help="run folder (uses its last.pt) or a checkpoint file written by vitssl pretrain")


def add_device(p: argparse.ArgumentParser, workers: bool = True) -> None:
    """``--device``, and ``--num-workers`` for commands that read datasets through a loader."""
    p.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu' or 'cuda' (default auto)")
    if workers:
        p.add_argument("--num-workers", type=int, default=2, help="data loader worker processes (default 2)")


def add_labelled_sets(p: argparse.ArgumentParser) -> None:
    """``--train`` / ``--val`` and their caps, defaulting to the run's labelled sets (see ``labelled_sets``)."""
    p.add_argument(
        "--train",
        help="labelled training set: folder root/<class>/<images> or a named dataset (default: the run's "
        "data.knn_train, else its data.train when labelled)",
    )
    p.add_argument("--val", help="labelled validation set (default: the run's data.val)")
    p.add_argument("--max-train", type=int, help="cap the training set (fixed stratified subset) to save time")
    p.add_argument("--max-val", type=int, help="cap the validation set (fixed stratified subset)")


def load_frozen(args: argparse.Namespace, at_init: bool = False) -> tuple[str, PretrainConfig, Backbone]:
    """The device named by ``--device`` and the run's frozen evaluation backbone on it (at initialisation with
    ``at_init``), with the run's config."""
    from vitssl.device import resolve_device
    from vitssl.eval.loading import load_backbone

    device = str(resolve_device(args.device))
    cfg, backbone = load_backbone(args.checkpoint, at_init=at_init, device=device)
    return device, cfg, backbone


# A protocol trains something on (config, backbone, device) and returns the files it wrote in the run folder.
EvalProtocol = Callable[["PretrainConfig", "Backbone", str, Path], Sequence[Path]]


def run_protocol(args: argparse.Namespace, protocol: EvalProtocol) -> int:
    """The frame shared by ``linear`` and ``finetune``: load the backbone (at initialisation with ``--at-init``),
    run the protocol with the run folder as output folder, and name the files it wrote."""
    from vitssl.checkpoints import run_dir_of

    device, cfg, backbone = load_frozen(args, at_init=args.at_init)
    written = protocol(cfg, backbone, device, run_dir_of(args.checkpoint))
    print("wrote " + " and ".join(str(path) for path in written))
    return 0


def provenance(args: argparse.Namespace) -> dict:
    """What every results file records about its source: the checkpoint, and whether it was at initialisation."""
    return {"checkpoint": str(args.checkpoint), "at_init": bool(getattr(args, "at_init", False))}
