"""What an evaluation loads from a run: its method and evaluation backbone (trained or at initialisation), and
the labelled train / validation sets it is scored on."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from vitssl.checkpoints import load_checkpoint
from vitssl.config import PretrainConfig, from_dict
from vitssl.data.build import build_labelled_dataset, knn_memory_spec
from vitssl.data.sources.folders import ImageFolderDataset
from vitssl.errors import VitsslError
from vitssl.methods import Method, build_method
from vitssl.models.backbones import Backbone
from vitssl.models.weights import load_backbone_weights


def load_method(
    checkpoint: str | Path, at_init: bool = False, init: str | Path | None = None, init_strict: bool = True
) -> tuple[PretrainConfig, Method]:
    """Rebuild the method of a run folder or checkpoint file, with its trained weights (or, with ``at_init``,
    the exact weights the run started from: same config, same seed).

    With ``init``, the backbones then take the weights at that path instead (a timm / safetensors file, an
    export folder or another run), checked by name and shape (``init_strict=False`` loads what matches and
    reports the rest): evaluate foreign weights with a run's architecture and data settings."""
    ckpt = load_checkpoint(checkpoint)
    cfg = from_dict(ckpt["config"])
    torch.manual_seed(cfg.train.seed)
    method = build_method(cfg)
    if not at_init:
        try:
            method.load_state_dict(ckpt["method"])
        except RuntimeError as exc:
            raise VitsslError(
                f"checkpoint {checkpoint} does not match its own config "
                f"({str(exc).splitlines()[0]}); was it written by another vitssl version?"
            ) from None
    if init is not None:
        reports = [load_backbone_weights(b, init, strict=init_strict) for b in method.backbones()]
        if reports:
            print(f"vitssl: --init: {reports[0].summary()}", file=sys.stderr)
    return cfg, method.eval()


def load_backbone(
    checkpoint: str | Path,
    at_init: bool = False,
    device: str | torch.device = "cpu",
    init: str | Path | None = None,
    init_strict: bool = True,
) -> tuple[PretrainConfig, Backbone]:
    """The evaluation backbone (the teacher where the method has one) of a run folder or checkpoint, in eval
    mode and frozen.

    Args:
        checkpoint: A run folder (its last.pt) or a checkpoint file written by ``vitssl pretrain``.
        at_init: Rebuild the same network at initialisation (same config and seed) instead of loading weights.
        device: Where to put the backbone.
    """
    cfg, method = load_method(checkpoint, at_init=at_init, init=None if at_init else init, init_strict=init_strict)
    backbone = method.eval_backbone().to(device).eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    return cfg, backbone


def labelled_sets(
    cfg: PretrainConfig,
    train: str | None,
    val: str | None,
    max_train: int | None = None,
    max_val: int | None = None,
    purpose: str = "evaluate on",
) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """The labelled training and validation sets of an evaluation, with the evaluation transform.

    Args:
        cfg: The run's config; supplies the defaults (``data.knn_train``, else a labelled ``data.train``; and
            ``data.val``) and the transform.
        train: ``--train``: a folder root/<class>/<images> or a named dataset; None for the run's default.
        val: ``--val``, likewise.
        max_train: Cap on the training set (a fixed stratified subset).
        max_val: Cap on the validation set.
        purpose: Completes "no labelled folders to ..." in the error raised when a set is missing.
    """
    train_spec = train or knn_memory_spec(cfg)
    val_spec = val or cfg.data.val
    if not train_spec or not val_spec:
        raise VitsslError(
            f"no labelled folders to {purpose}; pass --train FOLDER and --val FOLDER (root/<class>/<images>)"
        )
    train_set = build_labelled_dataset(cfg, train_spec, "train", max_train, "--train")
    val_set = build_labelled_dataset(cfg, val_spec, "val", max_val, "--val")
    return train_set, val_set
