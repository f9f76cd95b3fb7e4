"""The Hugging Face export: the timm folder, loaded by ``transformers.AutoModel`` as ``TimmWrapperModel``.

Why TimmWrapper rather than a key mapping onto ``ViTModel``/``SwinModel`` (transformers 5.x,
``models/timm_wrapper``): TimmWrapperModel runs the very timm module vitssl trains, built from ``model_args``
(``TimmWrapperConfig.model_args`` is passed to ``timm.create_model``), so the export is exact for every backbone
vitssl builds: register tokens (SiT), patch 2/4 at 32 px, Swin windows of 4, dynamic image sizes. The native
classes cannot express all of these exactly: ``ViTModel`` has no register tokens and adds a tanh pooler; its
``pooler_output`` is not the [CLS] after the final norm; ``SwinModel`` lays out windows and padding its own way.
The image processor (``TimmWrapperImageProcessor``) reads ``pretrained_cfg`` in ``config.json``: the run's mean,
std, crop size and resize ratio.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vitssl.errors import VitsslError
from vitssl.export.source import ExportSource, max_abs_diff, random_images
from vitssl.export.timm_folder import wrap_like
from vitssl.extras import require
from vitssl.methods.sit.heads import SiTBackbone

HF_TOLERANCE = 1e-4


def require_transformers() -> None:
    """Raise a one-line error naming the extra to install when transformers is missing."""
    require("transformers", "export", "--format hf")


def pooler_is_pooled(source: ExportSource) -> bool:
    """Whether HF's ``pooler_output`` (timm's ``forward_head``) is vitssl's pooled feature: the [CLS] of a ViT,
    the token mean of a Swin, SiT's rotation token; not SiT's contrastive token or its token means."""
    backbone = source.backbone
    return not isinstance(backbone, SiTBackbone) or backbone.feature == "rotation"


def check_hf_folder(source: ExportSource, out: Path) -> dict[str, float]:
    """Load ``out`` with ``AutoModel`` and compare tokens and pooled features with the training backbone.

    ``last_hidden_state`` is timm's ``forward_features`` output; vitssl's pooled feature is compared through the
    same interface as the backbone (for SiT's contrastive token that is ``last_hidden_state[:, 1]``).

    Raises:
        VitsslError: transformers does not load it as TimmWrapperModel, or outputs differ by > ``HF_TOLERANCE``.
    """
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the CLI prints its own one-line result
    try:
        model, info = AutoModel.from_pretrained(str(out), output_loading_info=True)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    if type(model).__name__ != "TimmWrapperModel":
        raise VitsslError(f"transformers loaded {out} as {type(model).__name__}, not TimmWrapperModel; please report")
    unmatched = [f"{kind} {sorted(keys)[:3]}" for kind, keys in info.items() if keys]
    if unmatched:
        raise VitsslError(f"transformers did not load {out} exactly ({'; '.join(unmatched)}); please report this")
    model.eval()
    x = random_images(source.image_size)
    with torch.no_grad():
        out_hf = model(pixel_values=x)
        ref = source.backbone(x)
        tokens = source.backbone.model.forward_features(x)
        diffs = {"hf last_hidden_state": max_abs_diff(tokens, out_hf.last_hidden_state)}
        if pooler_is_pooled(source):
            diffs["hf pooler_output"] = max_abs_diff(ref.pooled, out_hf.pooler_output)
        else:  # e.g. SiT's contrastive token: taken from last_hidden_state as the model card says
            diffs["hf pooled (from last_hidden_state)"] = max_abs_diff(
                ref.pooled, wrap_like(source, model.timm_model)(x).pooled
            )
    worst = max(diffs.values())
    if worst > HF_TOLERANCE:
        raise VitsslError(
            f"the Hugging Face export differs from the training backbone by {worst:.2e} (> {HF_TOLERANCE}); "
            "use --format timm or safetensors"
        )
    return diffs
