"""vitssl: self-supervised pretraining of vision transformers (DINO, EsViT, SiT), with evaluation and export."""

__version__ = "0.1.0"

# The package root registers the built-in methods (and their config sections), so that `vitssl.config` can load
# any preset whichever module a user imports first. The layers below never import the methods themselves.
from vitssl import methods as _methods  # noqa: E402, F401


def __getattr__(name: str) -> object:
    # Loaded on first use: the loader reaches the evaluation layer, which the package root must not import eagerly.
    if name == "load_backbone":
        from vitssl.eval.sources import load_backbone

        return load_backbone
    raise AttributeError(f"module 'vitssl' has no attribute {name!r}")
