"""How a backbone runs, as opposed to what it computes: the attention kernel, activation checkpointing and
``torch.compile``. None of these changes the weights or the state-dict names, so a run can switch them on
resume, and the results agree up to float rounding."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import nn

from vitssl.errors import VitsslError

AttentionKernel = Literal["auto", "fused", "explicit"]


def use_fused_attention(kernel: AttentionKernel, device: torch.device) -> bool:
    """Whether ``kernel`` means torch's fused ``scaled_dot_product_attention`` on ``device``.

    'auto' is fused on every device. On CUDA it runs flash / memory-efficient kernels. On this project's 2-core
    CPU, at ViT-Tiny's 17-65 tokens, the explicit kernel measured 6 % faster (within the machines' +-10 % noise)
    for 7 % more peak memory (docs/benchmarks.md), so the CPU keeps the fused default too and explicit is a choice.
    """
    del device  # the measured choice is the same on both devices; kept for a future per-device default
    return kernel != "explicit"


def set_attention_kernel(module: nn.Module, fused: bool) -> int:
    """Switch every timm attention layer under ``module`` (ViT ``Attention``, Swin ``WindowAttention``) to the
    fused or the explicit kernel; returns how many layers were switched."""
    layers: list[Any] = [m for m in module.modules() if hasattr(m, "fused_attn")]  # timm attention layers
    for layer in layers:
        layer.fused_attn = fused
    return len(layers)


def set_grad_checkpointing(backbone: nn.Module, enabled: bool = True) -> None:
    """Activation checkpointing of the backbone's blocks through timm's own switch."""
    model: Any = getattr(backbone, "model", backbone)  # a timm model (or the module itself): attributes by family
    if not hasattr(model, "set_grad_checkpointing"):
        raise VitsslError(f"{type(model).__name__} has no activation checkpointing; set model.grad_checkpointing=false")
    model.set_grad_checkpointing(enabled)


def compile_in_place(modules: Iterable[nn.Module]) -> None:
    """``nn.Module.compile`` each module: its ``__call__`` goes through ``torch.compile`` while its parameters and
    state-dict names stay as they were (no ``_orig_mod.`` prefix in checkpoints). Compilation happens lazily, at
    the first call with each input shape (one graph per crop size)."""
    for module in modules:
        module.compile()


def configure_backbones(
    student: nn.Module,
    others: Iterable[nn.Module],
    device: torch.device,
    attention: AttentionKernel = "auto",
    grad_checkpointing: bool = False,
    compile_model: bool = False,
) -> None:
    """Apply the run-time options to the student backbone and to the other copies (the teacher): the attention
    kernel and compilation to all, activation checkpointing to the student only (the teacher keeps no
    activations: it runs without gradients)."""
    backbones = [student, *others]
    fused = use_fused_attention(attention, device)
    for backbone in backbones:
        set_attention_kernel(backbone, fused)
    if grad_checkpointing:
        set_grad_checkpointing(student)
    if compile_model:
        compile_in_place(backbones)
