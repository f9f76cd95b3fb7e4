"""Optional dependencies: imported only where a feature needs them, with a one-line error naming the extra.

The core install is what training and k-NN need. Each optional feature names its extra, so a missing package is
``vitssl: error: packing shards needs webdataset; install it with pip install "vitssl[shards]"`` rather than an
ImportError traceback from deep inside the feature.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from vitssl.errors import VitsslError

EXTRAS: dict[str, tuple[str, ...]] = {
    "shards": ("webdataset", "braceexpand"),
    "detect": ("torchmetrics", "pycocotools"),
    "export": ("onnx", "onnxscript", "onnxruntime", "transformers"),
    "wandb": ("wandb",),
    "mlflow": ("mlflow",),
}
"""The import names each extra of ``pyproject.toml`` provides (what ``require`` checks)."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` (an import name such as ``webdataset``), or stop with one line naming the extra.

    Args:
        module: The module to import.
        extra: The ``vitssl[...]`` extra that installs it.
        purpose: What needs it, as the start of the sentence ("packing shards", "--format onnx").

    Raises:
        VitsslError: The module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise VitsslError(f'{purpose} needs {top}; install it with pip install "vitssl[{extra}]"') from None
