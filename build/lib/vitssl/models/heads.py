"""Projection heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class WeightNormLinear(nn.Module):
    """Bias-free linear layer with weight normalisation ``W = g * v / ||v||`` per output row.

    Salimans & Kingma 2016. Written out instead of ``torch.nn.utils.parametrizations.weight_norm`` so the
    parameter names stay plain and the teacher copy/EMA need no special case. ``weight_g`` is 1-D, so it gets no
    weight decay.

    ``v`` starts truncated normal with std 0.02. DINO's code keeps a default ``nn.Linear`` weight there (uniform in
    +-1/sqrt(in_features), std about 0.036 for 256 inputs); the forward pass does not depend on the scale of
    ``v``, but the size of AdamW's steps relative to ``v`` does (a smaller ``v`` turns the prototypes faster),
    and with the default init the demo preset's attention no longer moved onto the objects (docs/methods.md
    section 5, row 29).
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_g = nn.Parameter(torch.ones(out_features))
        nn.init.trunc_normal_(self.weight_v, std=0.02)

    @property
    def weight(self) -> Tensor:
        return self.weight_g.unsqueeze(1) * F.normalize(self.weight_v, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)


class DINOHead(nn.Module):
    """DINO projection head (Caron et al. 2021, arXiv 2104.14294, section 3 and appendix).

    MLP ``in_dim -> hidden -> hidden -> bottleneck`` with GELU, L2 normalisation, then a weight-normalised linear
    layer to ``out_dim`` prototypes. With ``norm_last_layer=True`` the norm ``g`` is frozen at 1, so the logits
    are cosine similarities between the bottleneck feature and the prototypes.

    Args:
        in_dim: backbone feature width.
        out_dim: number of prototypes K.
        hidden_dim: MLP hidden width.
        bottleneck_dim: width before the last layer.
        nlayers: number of MLP layers (>= 1).
        use_bn: BatchNorm after each hidden linear layer.
        norm_last_layer: freeze the last layer's weight norm at 1.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        use_bn: bool = False,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        nlayers = max(nlayers, 1)
        layers: list[nn.Module] = []
        dims = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            layers.append(nn.Linear(d_in, d_out))
            if i < nlayers - 1:
                if use_bn:
                    layers.append(nn.BatchNorm1d(d_out))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.apply(self._init_linear)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    @staticmethod
    def _init_linear(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = F.normalize(self.mlp(x), dim=-1, eps=1e-6 if x.dtype == torch.float32 else 1e-4)
        return self.last_layer(x)
