"""Hugging Face round trips: ``AutoModel.from_pretrained`` loads the export as TimmWrapperModel with matching
outputs (<= 1e-4) for ViT, Swin and SiT, and ``AutoImageProcessor`` reproduces the run's eval transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vitssl.data.build import eval_transform
from vitssl.export import export_run

from .conftest import images_for

transformers = pytest.importorskip("transformers")
KINDS = ("vit", "swin", "sit")


@pytest.fixture(scope="module")
def exports(runs, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hf_exports")
    return {kind: export_run(runs[kind], "hf", root / kind) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_automodel_loads_the_export(kind, exports, reference):
    model, info = transformers.AutoModel.from_pretrained(str(exports[kind].out), output_loading_info=True)
    assert type(model).__name__ == "TimmWrapperModel"
    assert not any(info.values()), info  # no missing, unexpected or mismatched key
    cfg, backbone = reference(kind)
    x = images_for(cfg)
    with torch.no_grad():
        out = model.eval()(pixel_values=x)
        hidden_diff = float((out.last_hidden_state - backbone.model.forward_features(x)).abs().max())
        # SiT's pooled feature is its contrastive token, the register token at index 1 (see the model card)
        pooled = out.last_hidden_state[:, 1] if kind == "sit" else out.pooler_output
        pooled_diff = float((pooled - backbone(x).pooled).abs().max())
    print(f"hf {kind}: last_hidden_state {hidden_diff:.2e}, pooled {pooled_diff:.2e}")
    assert hidden_diff <= 1e-4 and pooled_diff <= 1e-4


def test_image_processor_is_the_run_eval_transform(exports, reference):
    processor = transformers.AutoImageProcessor.from_pretrained(str(exports["vit"].out))
    cfg, _ = reference("vit")
    assert list(processor.data_config["mean"]) == pytest.approx(cfg.data.mean)
    assert list(processor.data_config["std"]) == pytest.approx(cfg.data.std)
    assert tuple(processor.data_config["input_size"][1:]) == (16, 16)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(30, 41, 3), dtype=np.uint8))
    ours = eval_transform(cfg)(image)
    theirs = processor(image, return_tensors="pt")["pixel_values"][0]
    diff = float((ours - theirs).abs().max())
    print(f"hf image processor vs eval transform: max abs diff {diff:.2e}")
    assert diff <= 1e-5
