"""Arguments shared by the evaluation subcommands (so every command words them, and defaults them, the same)."""

from __future__ import annotations

import argparse


def add_checkpoint(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="run folder (uses its last.pt) or a checkpoint file written by vitssl pretrain")


def add_device(p: argparse.ArgumentParser, workers: bool = True) -> None:
    p.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu' or 'cuda' (default auto)")
    if workers:
        p.add_argument("--num-workers", type=int, default=2, help="data loader worker processes (default 2)")


def add_labelled_sets(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--train",
        help="labelled training set: folder root/<class>/<images> or a named dataset (default: the run's "
        "data.knn_train, else its data.train when labelled)",
    )
    p.add_argument("--val", help="labelled validation set (default: the run's data.val)")
    p.add_argument("--max-train", type=int, help="cap the training set (fixed stratified subset) to save time")
    p.add_argument("--max-val", type=int, help="cap the validation set (fixed stratified subset)")
