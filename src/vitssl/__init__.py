"""vitssl: self-supervised pretraining of vision transformers (DINO, EsViT, SiT), with evaluation and export."""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

# The package root registers the built-in methods (and their config sections), so that `vitssl.config` can load
# any preset whichever module a user imports first. The layers below never import the methods themselves.
from vitssl import methods as _methods  # noqa: E402, F401

if TYPE_CHECKING:
    from vitssl.api import pretrain


def __getattr__(name: str) -> object:
    """``vitssl.pretrain``: the training API, imported on first use (it pulls in the trainer and torch's data
    machinery, which ``import vitssl`` alone should not)."""
    if name == "pretrain":
        from vitssl.api import pretrain

        return pretrain
    raise AttributeError(f"module 'vitssl' has no attribute {name!r}")


__all__ = ["__version__", "pretrain"]
