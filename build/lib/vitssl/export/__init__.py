"""Taking trained weights elsewhere: safetensors, timm, Hugging Face and ONNX exports, and image embeddings.

See ``docs/export.md``. Importing weights back into a backbone is :mod:`vitssl.models.weights` (it needs no
method code, so it lives with the models).
"""

from vitssl.export.exporter import FORMATS, ExportResult, export_run

__all__ = ["FORMATS", "ExportResult", "export_run"]
