"""What an export starts from: a run's config and one of its networks (teacher or student), in eval mode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from vitssl.checkpoints import run_dir_of
from vitssl.config import PretrainConfig
from vitssl.errors import VitsslError
from vitssl.models.backbones import Backbone

Which = Literal["teacher", "student"]


@dataclass
class ExportSource:
    """One network of a run, ready to be written out.

    Attributes:
        cfg: The run's config.
        checkpoint: The run folder or checkpoint file it came from.
        run_dir: The run folder (where ``knn.json`` and other results live).
        which: ``teacher`` or ``student``.
        network: The whole network (backbone and heads), as the method holds it.
        backbone: ``network["backbone"]``.
    """

    cfg: PretrainConfig
    checkpoint: Path
    run_dir: Path
    which: Which
    network: nn.ModuleDict
    backbone: Backbone

    @property
    def image_size(self) -> int:
        """The side of the images the run evaluates on (the eval transform's crop)."""
        return int(self.cfg.data.eval_size or self.cfg.crops.global_size)

    def head_state(self) -> dict[str, Tensor]:
        """The heads' tensors under the method's names (``head.mlp.0.weight``...), backbone excluded."""
        return {k: v for k, v in self.network.state_dict().items() if not k.startswith("backbone.")}


def load_export_source(checkpoint: str | Path, which: Which | None = None) -> ExportSource:
    """Rebuild a run's method and pick the network to export.

    Args:
        checkpoint: A run folder (its ``last.pt``) or a checkpoint file.
        which: ``teacher`` or ``student``; None picks the teacher where the method has one (DINO, EsViT, masked
            SiT), else the student (SiT's original variant has no teacher).

    Raises:
        VitsslError: The checkpoint is missing or unreadable, or ``teacher`` is asked of a method without one.
    """
    from vitssl.eval.loading import load_method

    cfg, method = load_method(checkpoint)
    networks = {name: getattr(method, name, None) for name in ("teacher", "student")}
    if not isinstance(networks["student"], nn.ModuleDict):
        raise VitsslError(f"method {cfg.method} has no student network to export; export supports dino, esvit, sit")
    if which is None:
        which = "teacher" if networks["teacher"] is not None else "student"
    network = networks[which]
    if not isinstance(network, nn.ModuleDict):
        raise VitsslError(f"method {cfg.method} of {checkpoint} has no teacher; export it with --which student")
    network.eval()
    for p in network.parameters():
        p.requires_grad_(False)
    backbone = network["backbone"]
    if not isinstance(backbone, Backbone):
        raise VitsslError(f"the {which} of method {cfg.method} has no vitssl backbone to export")
    return ExportSource(cfg, Path(checkpoint), run_dir_of(checkpoint), which, network, backbone)


def random_images(size: int, batch: int = 2, seed: int = 0) -> Tensor:
    """A fixed batch of normal noise images, (batch, 3, size, size), for numerical checks."""
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def max_abs_diff(a: Tensor, b: Tensor) -> float:
    """Largest absolute difference of two tensors of the same shape (a shape mismatch is an error)."""
    if tuple(a.shape) != tuple(b.shape):
        raise VitsslError(f"export check: shapes differ ({tuple(a.shape)} vs {tuple(b.shape)}); please report this")
    return float((a.detach().float() - b.detach().float()).abs().max())
