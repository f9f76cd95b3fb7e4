"""Fixtures of the weights-import tests: release files in the authors' layouts, built offline from random tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dino_reference import RefViT, random_state

# ViT-S/16's width and heads (DINO's dino_deitsmall16), two blocks to keep the tests fast.
SMALL = {"img_size": 224, "patch_size": 16, "embed_dim": 384, "depth": 2, "num_heads": 6}
# A tiny DINO-layout ViT for the commands (16 px images, patch 4, 64 wide: one 64-wide head).
TINY = {"img_size": 16, "patch_size": 4, "embed_dim": 64, "depth": 1, "num_heads": 1}


def reference(arch: dict, seed: int = 0) -> tuple[RefViT, dict[str, torch.Tensor]]:
    """The reference ViT with a random state loaded strictly, and that state."""
    model = RefViT(**arch).eval()
    state = random_state(model, seed)
    model.load_state_dict(state, strict=True)
    return model, state


@pytest.fixture(scope="session")
def dino_release(tmp_path_factory) -> tuple[Path, RefViT]:
    """``dino_deitsmall16_pretrain.pth``'s layout (plain state dict), depth 2, and its reference network."""
    model, state = reference(SMALL)
    path = tmp_path_factory.mktemp("releases") / "dino_deitsmall16_pretrain.pth"
    torch.save(state, path)
    return path, model


@pytest.fixture(scope="session")
def tiny_release(tmp_path_factory) -> tuple[Path, RefViT]:
    """A tiny DINO-layout release for the commands, and its reference network."""
    model, state = reference(TINY, seed=1)
    path = tmp_path_factory.mktemp("tiny_release") / "dino_tiny.pth"
    torch.save(state, path)
    return path, model
