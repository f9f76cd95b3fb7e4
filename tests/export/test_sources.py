"""vitssl's own runs and export folders as a SOURCE of ``vitssl.load_backbone``: the run's own backbone."""

from __future__ import annotations

import pytest
import torch

import vitssl
from vitssl.export import export_run


@pytest.mark.parametrize("kind", ["vit", "swin", "sit"])
@pytest.mark.parametrize("fmt", ["safetensors", "timm", "hf"])
def test_export_folder_loads_as_the_run(runs, reference, tmp_path, kind, fmt):
    _, ref = reference(kind)
    export_run(runs[kind], fmt, tmp_path / fmt)
    size = 32 if kind == "swin" else 16
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for source in (runs[kind], runs[kind] / "last.pt", tmp_path / fmt):
            got = vitssl.load_backbone(source)
            assert type(got) is type(ref)
            assert float((got.pooled(x) - ref.pooled(x)).abs().max()) == 0.0, source
