"""Where computations run and in which precision: one home for the trainer and the evaluation commands."""

from __future__ import annotations

import torch

from vitssl.errors import VitsslError

DEVICE_HELP = "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'"


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """``auto`` -> CUDA when a GPU is visible, else CPU; a one-line error for unknown or absent devices."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise VitsslError(f"{key}={name!r} is not a device; use {DEVICE_HELP}") from None
    if device.type not in ("cpu", "cuda"):
        raise VitsslError(f"{key}={name!r} is not supported; use {DEVICE_HELP}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VitsslError(f"{key}={name} asks for CUDA but no GPU is visible; use {key}=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise VitsslError(f"{key}={name}: only {torch.cuda.device_count()} GPU(s) are visible")
    return device


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32: ``auto`` is bf16 on GPUs that support it, else fp16, fp32 on CPU."""
    if name == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
