"""vitssl: self-supervised pretraining of vision transformers (DINO, EsViT, SiT), with evaluation and export."""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

# The package root registers the built-in methods (and their config sections), so that `vitssl.config` can load
# any preset whichever module a user imports first. The layers below never import the methods themselves.
from vitssl import methods as _methods  # noqa: E402, F401

if TYPE_CHECKING:
    from vitssl.api import knn, pretrain
    from vitssl.eval.sources import load_backbone


def __getattr__(name: str) -> object:
    """``vitssl.pretrain`` (the training API), ``vitssl.knn`` and ``vitssl.load_backbone`` (any weights as an evaluation
    backbone), imported on first use: they pull in the trainer and the evaluation layer, which ``import vitssl``
    alone should not."""
    if name == "pretrain":
        from vitssl.api import knn, pretrain

        return pretrain
    if name == "knn":
        from vitssl.api import knn

        return knn
    if name == "load_backbone":
        from vitssl.eval.sources import load_backbone

        return load_backbone
    raise AttributeError(f"module 'vitssl' has no attribute {name!r}")


__all__ = ["__version__", "knn", "load_backbone", "pretrain"]
