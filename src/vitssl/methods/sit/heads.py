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
ContrastiveToken = Literal["register", "cls"]
ReconstructionKind = Literal["linear", "mlp_deconv"]
_TOKEN_SLOTS = {"register": CONTRASTIVE_TOKEN, "cls": ROTATION_TOKEN}


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
        contrastive_token: Which slot carries the contrastive embedding: the register token (``"register"``,
            SiT 2021's dedicated token) or the [CLS] token (``"cls"``, the authors' 2022 masked variant, which has
            a single [CLS] token; only meaningful without a rotation task).
    """

    def __init__(
        self, model: nn.Module, feature: KNNFeature = "contrastive", contrastive_token: ContrastiveToken = "register"
    ) -> None:
        super().__init__(model)
        if self.num_prefix_tokens != 2:
            raise VitsslError(
                f"a SiT backbone needs 2 prefix tokens (rotation + contrastive), this one has {self.num_prefix_tokens}"
            )
        if feature not in ("contrastive", "rotation", "patch_mean", "tokens_mean"):
            raise VitsslError(
                f"unknown SiT k-NN feature {feature!r}; use contrastive, rotation, patch_mean or tokens_mean"
            )
        if contrastive_token not in _TOKEN_SLOTS:
            raise VitsslError(f"unknown SiT contrastive token {contrastive_token!r}; use 'register' or 'cls'")
        self.feature = feature
        self.contrastive_slot = _TOKEN_SLOTS[contrastive_token]

    def final_tokens(self, images: Tensor, masks: Tensor | None = None) -> Tensor:
        """(B, 2 + N, D) tokens after the final norm: rotation, contrastive, then the patches (``masks``: token
        masks as in :meth:`Backbone.forward`)."""
        if masks is not None:
            masked: Tensor = self._masked_features(images, masks)
            return masked
        tokens: Tensor = self.forward_features(images)
        return tokens

    def tokens_by_role(self, images: Tensor) -> SiTTokens:
        """One forward pass, returning the rotation token, the contrastive token and the patch tokens."""
        out = self.final_tokens(images)
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        return SiTTokens(out[:, ROTATION_TOKEN], out[:, self.contrastive_slot], out[:, 2:], grid)

    def forward(self, images: Tensor, masks: Tensor | None = None) -> Features:
        out = self.final_tokens(images, masks)
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        pooled = {
            "rotation": lambda: out[:, ROTATION_TOKEN],
            "contrastive": lambda: out[:, self.contrastive_slot],
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
    contrastive_token: ContrastiveToken = "register",
) -> SiTBackbone:
    """A randomly initialised ViT with a rotation token ([CLS]) and a contrastive token (a register token)."""
    base = build_backbone(
        name, patch_size=patch_size, img_size=img_size, depth=depth, drop_path_rate=drop_path_rate, reg_tokens=1
    )
    if getattr(base.model, "cls_token", None) is None:
        raise VitsslError(f"backbone '{name}' has no [CLS] token; SiT needs a ViT with class_token=True")
    return SiTBackbone(base.model, feature, contrastive_token)


def init_linear_layers(module: nn.Module) -> None:
    """Every ``nn.Linear`` inside ``module``: weights truncated normal with std 0.02, biases 0, as the SiT authors'
    code (2021 and 2022) initialises the linear layers of its heads; transposed convolutions keep PyTorch's."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.trunc_normal_(layer.weight, std=0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class RotationHead(nn.Linear):
    """Linear(D, 4) on the rotation token: logits of k in {0, 1, 2, 3} (weights truncated normal, std 0.02)."""

    def __init__(self, dim: int, num_rotations: int = 4) -> None:
        super().__init__(dim, num_rotations)
        init_linear_layers(self)


def _mlp_blocks(dim: int, hidden_dim: int, out_dim: int, layers: int, batch_norm: bool) -> list[nn.Module]:
    """The projection MLP's layers. Without BatchNorm: ``layers - 1`` x (Linear, GELU), then Linear. With it, the
    masked SiT authors' head: Linear-BatchNorm-ReLU, then ``layers - 2`` x (Linear-BatchNorm-GELU), then Linear and
    a BatchNorm1d without affine parameters, so every embedding dimension leaves standardised over the batch."""
    blocks: list[nn.Module] = []
    width = dim
    for i in range(layers - 1):
        blocks.append(nn.Linear(width, hidden_dim))
        if batch_norm:
            blocks.append(nn.BatchNorm1d(hidden_dim))
        blocks.append(nn.ReLU() if batch_norm and i == 0 else nn.GELU())
        width = hidden_dim
    blocks.append(nn.Linear(hidden_dim, out_dim))
    if batch_norm:
        blocks.append(nn.BatchNorm1d(out_dim, affine=False))
    return blocks


class ContrastiveHead(nn.Module):
    """Projection of the contrastive token: Linear(D, out) (SiT 2021), or an MLP with ``hidden_dim``.

    Without BatchNorm the MLP is ``layers - 1`` blocks of Linear(., hidden) -> GELU, then Linear(hidden, out).
    With ``batch_norm`` it is the authors' 2022 masked-variant head (Atito et al., arXiv 2104.03602 v3; 3 layers,
    width 4096, 256-d output; docs/methods.md 3.4): Linear-BN-ReLU, Linear-BN-GELU, Linear, then BatchNorm1d
    without affine parameters. Under torchrun the trainer makes every BatchNorm cross-process (docs/methods.md
    4.4). Linear layers start truncated normal (std 0.02) with zero biases, as in the authors' code.

    Args:
        dim: Token width D.
        out_dim: Embedding size (512 in SiT 2021, 256 in the masked variant).
        hidden_dim: 0 for a single linear layer, else the MLP's hidden width.
        layers: Linear layers of the MLP (>= 2; ignored when ``hidden_dim`` is 0).
        batch_norm: The authors' BatchNorm head described above.
    """

    def __init__(
        self, dim: int, out_dim: int = 512, hidden_dim: int = 0, layers: int = 2, batch_norm: bool = False
    ) -> None:
        super().__init__()
        if hidden_dim <= 0:
            self.net: nn.Module = nn.Linear(dim, out_dim)
        elif layers < 2:
            raise VitsslError(f"an MLP projection head needs at least 2 layers, got {layers}")
        else:
            self.net = nn.Sequential(*_mlp_blocks(dim, hidden_dim, out_dim, layers, batch_norm))
        init_linear_layers(self)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(x)
        return out


class ReconstructionHead(nn.Module):
    """Patch tokens -> the image, in normalised pixel space like the targets.

    ``kind="linear"`` (vitssl's default): optional Linear-GELU of width ``hidden_dim``, then a linear map to
    ``patch * patch * 3`` pixels per token, put back in place (a ConvTranspose2d with kernel = stride = patch,
    but with one bias per output pixel). ``kind="mlp_deconv"``: the SiT authors' head, ``mlp_layers`` blocks of
    Linear(D, D) -> GELU on every token, then ConvTranspose2d(D, 3, kernel = stride = patch) (one bias per
    channel; docs/methods.md 3.2 and 3.4). Both work for any patch and image size: the grid comes with the tokens.
    Linear layers start truncated normal (std 0.02) with zero biases, as the authors' are; the transposed
    convolution keeps PyTorch's initialisation, as theirs does.

    Args:
        dim: Token width D.
        patch_size: Side of the patch each token reconstructs.
        hidden_dim: ``linear`` only: 0 for a linear map, else the width of a Linear-GELU before it.
        channels: Image channels.
        kind: ``"linear"`` or ``"mlp_deconv"``.
        mlp_layers: ``mlp_deconv`` only: the number of Linear(D, D) -> GELU blocks (3 in the authors' code).
    """

    def __init__(
        self,
        dim: int,
        patch_size: int,
        hidden_dim: int = 0,
        channels: int = 3,
        kind: ReconstructionKind = "linear",
        mlp_layers: int = 3,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.channels = channels
        self.kind = kind
        if kind == "mlp_deconv":
            blocks: list[nn.Module] = []
            for _ in range(mlp_layers):
                blocks += [nn.Linear(dim, dim), nn.GELU()]
            self.mlp = nn.Sequential(*blocks)
            self.deconv = nn.ConvTranspose2d(dim, channels, kernel_size=patch_size, stride=patch_size)
            init_linear_layers(self)
            return
        if kind != "linear":
            raise VitsslError(f"unknown reconstruction head {kind!r}; use 'linear' or 'mlp_deconv'")
        layers: list[nn.Module] = []
        if hidden_dim > 0:
            layers += [nn.Linear(dim, hidden_dim), nn.GELU()]
        layers.append(nn.Linear(hidden_dim or dim, patch_size * patch_size * channels))
        self.net = nn.Sequential(*layers)
        init_linear_layers(self)

    def forward(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        """(B, N, D) row-major tokens over ``grid`` -> (B, C, rows * patch, cols * patch) image."""
        b, n, d = tokens.shape
        rows, cols = grid
        if n != rows * cols:
            raise VitsslError(f"reconstruction got {n} tokens for a {rows}x{cols} grid")
        if self.kind == "mlp_deconv":
            # (B, N, D) -> (B, D, rows, cols): the token grid as a feature map for the transposed convolution
            features = self.mlp(tokens).transpose(1, 2).reshape(b, d, rows, cols)
            image: Tensor = self.deconv(features)
            return image
        p, c = self.patch_size, self.channels
        pixels: Tensor = self.net(tokens).view(b, rows, cols, c, p, p)
        # (B, rows, cols, C, p, p) -> (B, C, rows, p, cols, p): each token's patch goes back to its place
        return pixels.permute(0, 3, 1, 4, 2, 5).reshape(b, c, rows * p, cols * p)
