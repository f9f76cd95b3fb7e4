"""Atomic, resumable checkpoints that load with ``torch.load(weights_only=True)``, and the run folder they live in.

A leaf module: the trainer writes checkpoints, the evaluation commands read them, and neither imports the other."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from vitssl.errors import VitsslError

LAST = "last.pt"


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over ``path``.

    A crash or a full disk at any moment leaves either the old file or the new one, never a torn file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_dir_of(checkpoint: str | Path) -> Path:
    """The run folder of a run folder or of a checkpoint file inside one (the file's folder)."""
    path = Path(checkpoint)
    return path if path.is_dir() else path.parent


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a vitssl checkpoint safely (tensors and plain containers only)."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise VitsslError(f"checkpoint {path} does not exist; pass a run folder or a .pt file written by vitssl")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for torn or foreign files
        raise VitsslError(
            f"could not read checkpoint {path} ({type(exc).__name__}); it is corrupt or not a "
            "vitssl checkpoint: use another file or delete it to restart"
        ) from None
    if not isinstance(ckpt, dict) or "method" not in ckpt or "config" not in ckpt:
        raise VitsslError(f"{path} is not a vitssl checkpoint (no 'method'/'config' entries)")
    return ckpt


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
