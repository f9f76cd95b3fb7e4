"""SiT's network: a ViT with a rotation token and a contrastive token, and its three heads (Atito et al. 2021,
"SiT: Self-supervised vIsion Transformer", arXiv 2104.03602, section 3.2).

The two extra tokens are timm's prefix tokens: the [CLS] token is the rotation token and one register token is
the contrastive token (``class_token=True, reg_tokens=1``); without ``no_embed_class`` timm gives both of them
position embeddings, as SiT does (N + 2 positions). Parameters keep timm's names, so the backbone exports like
any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from vitssl.errors import VitsslError
from vitssl.models.backbones import Backbone, Features, build_backbone

__all__ = [
    "ContrastiveHead",
    "ReconstructionHead",
    "RotationHead",
    "SiTBackbone",
    "SiTTokens",
    "build_sit_backbone",
]

ROTATION_TOKEN = 0  # the [CLS] slot
CONTRASTIVE_TOKEN = 1  # the register-token slot
KNNFeature = Literal["contrastive", "rotation", "patch_mean", "tokens_mean"]


@dataclass
class SiTTokens:
    """The final-norm tokens of a SiT backbone, split by role.

    Attributes:
        rotation: (B, D) rotation token.
        contrastive: (B, D) contrastive token.
        patches: (B, N, D) patch tokens, row-major over ``grid``.
        grid: (rows, cols) of the patch grid.
    """

    rotation: Tensor
    contrastive: Tensor
    patches: Tensor
    grid: tuple[int, int]


class SiTBackbone(Backbone):
    """A ViT with SiT's two prefix tokens; ``pooled`` is the feature chosen for k-NN.

    Args:
        model: A timm ViT with exactly two prefix tokens ([CLS] + one register token).
        feature: What ``pooled`` returns: the ``contrastive`` token, the ``rotation`` token, the mean of the
            patch tokens (``patch_mean``) or of all final tokens (``tokens_mean``).
    """

    def __init__(self, model: nn.Module, feature: KNNFeature = "contrastive") -> None:
        super().__init__(model)
        if self.num_prefix_tokens != 2:
            raise VitsslError(
                f"a SiT backbone needs 2 prefix tokens (rotation + contrastive), this one has {self.num_prefix_tokens}"
            )
        if feature not in ("contrastive", "rotation", "patch_mean", "tokens_mean"):
            raise VitsslError(
                f"unknown SiT k-NN feature {feature!r}; use contrastive, rotation, patch_mean or tokens_mean"
            )
        self.feature = feature

    def final_tokens(self, images: Tensor) -> Tensor:
        """(B, 2 + N, D) tokens after the final norm: rotation, contrastive, then the patches."""
        return self.model.forward_features(images)  # type: ignore[operator]  # a timm ViT method

    def tokens_by_role(self, images: Tensor) -> SiTTokens:
        """One forward pass, returning the rotation token, the contrastive token and the patch tokens."""
        out = self.final_tokens(images)
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        return SiTTokens(out[:, ROTATION_TOKEN], out[:, CONTRASTIVE_TOKEN], out[:, 2:], grid)

    def forward(self, images: Tensor) -> Features:
        out = self.final_tokens(images)
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        pooled = {
            "rotation": lambda: out[:, ROTATION_TOKEN],
            "contrastive": lambda: out[:, CONTRASTIVE_TOKEN],
            "patch_mean": lambda: out[:, 2:].mean(dim=1),
            "tokens_mean": lambda: out.mean(dim=1),
        }[self.feature]()
        return Features(pooled=pooled, tokens=out[:, 2:], grid=grid)


def build_sit_backbone(
    name: str,
    patch_size: int | None,
    img_size: int,
    depth: int | None,
    drop_path_rate: float,
    feature: KNNFeature = "contrastive",
) -> SiTBackbone:
    """A randomly initialised ViT with a rotation token ([CLS]) and a contrastive token (a register token)."""
    base = build_backbone(
        name, patch_size=patch_size, img_size=img_size, depth=depth, drop_path_rate=drop_path_rate, reg_tokens=1
    )
    if getattr(base.model, "cls_token", None) is None:
        raise VitsslError(f"backbone '{name}' has no [CLS] token; SiT needs a ViT with class_token=True")
    return SiTBackbone(base.model, feature)


class RotationHead(nn.Linear):
    """Linear(D, 4) on the rotation token: logits of k in {0, 1, 2, 3}."""

    def __init__(self, dim: int, num_rotations: int = 4) -> None:
        super().__init__(dim, num_rotations)


class ContrastiveHead(nn.Module):
    """Projection of the contrastive token: Linear(D, out) (the paper), or Linear-GELU-Linear with ``hidden_dim``.

    Args:
        dim: Token width D.
        out_dim: Embedding size (512 in SiT).
        hidden_dim: 0 for a single linear layer, else the MLP's hidden width.
    """

    def __init__(self, dim: int, out_dim: int = 512, hidden_dim: int = 0) -> None:
        super().__init__()
        if hidden_dim > 0:
            self.net: nn.Module = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))
        else:
            self.net = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ReconstructionHead(nn.Module):
    """Patch tokens -> (optional MLP) -> ``patch * patch * 3`` pixels per token -> the image.

    Equivalent to a ConvTranspose2d with kernel = stride = patch; works for any patch and image size because the
    grid comes with the tokens. The output is in normalised pixel space, like the targets.

    Args:
        dim: Token width D.
        patch_size: Side of the patch each token reconstructs.
        hidden_dim: 0 for a linear map, else the width of a Linear-GELU before it.
        channels: Image channels.
    """

    def __init__(self, dim: int, patch_size: int, hidden_dim: int = 0, channels: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.channels = channels
        layers: list[nn.Module] = []
        if hidden_dim > 0:
            layers += [nn.Linear(dim, hidden_dim), nn.GELU()]
        layers.append(nn.Linear(hidden_dim or dim, patch_size * patch_size * channels))
        self.net = nn.Sequential(*layers)

    def forward(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        """(B, N, D) row-major tokens over ``grid`` -> (B, C, rows * patch, cols * patch) image."""
        b, n, _ = tokens.shape
        rows, cols = grid
        if n != rows * cols:
            raise VitsslError(f"reconstruction got {n} tokens for a {rows}x{cols} grid")
        p, c = self.patch_size, self.channels
        pixels = self.net(tokens).view(b, rows, cols, c, p, p)
        # (B, rows, cols, C, p, p) -> (B, C, rows, p, cols, p): each token's patch goes back to its place
        return pixels.permute(0, 3, 1, 4, 2, 5).reshape(b, c, rows * p, cols * p)
