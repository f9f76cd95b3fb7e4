"""torchvision detectors on the adapters: one forward/backward on the CPU, and inference outputs."""

from __future__ import annotations

import pytest
import torch

from vitssl.detection.model import build_detector, build_pyramid
from vitssl.errors import VitsslError

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def _batch() -> tuple[list[torch.Tensor], list[dict]]:
    images = [torch.rand(3, 48, 48), torch.rand(3, 40, 56)]  # different sizes; the second has no object
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 30.0, 28.0], [20.0, 20.0, 44.0, 40.0]]), "labels": torch.tensor([1, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    return images, targets


def _step(model: torch.nn.Module) -> dict[str, float]:
    model.train()
    images, targets = _batch()
    losses = model(images, targets)
    sum(losses.values()).backward()
    return {k: v.item() for k, v in losses.items()}


@pytest.mark.parametrize("detector", ["faster_rcnn", "retinanet", "fcos"])
def test_vit_detector_forward_backward(tiny_vit, detector):
    pyramid = build_pyramid(tiny_vit, 32).unfreeze()
    model = build_detector(pyramid, detector, 3, 48, MEAN, STD)
    losses = _step(model)
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_vit.parameters())
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 48, 48), torch.rand(3, 33, 61)])
    assert len(out) == 2 and set(out[0]) == {"boxes", "scores", "labels"}
    if len(out[1]["boxes"]):  # predictions come back in the input image's own pixels
        assert out[1]["boxes"][:, 2].max() <= 61 + 1e-3 and out[1]["boxes"][:, 3].max() <= 33 + 1e-3


def test_swin_faster_rcnn_forward_backward_with_frozen_backbone(tiny_swin):
    pyramid = build_pyramid(tiny_swin, 32).freeze()
    model = build_detector(pyramid, "faster_rcnn", 3, 48, MEAN, STD)
    losses = _step(model)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert all(p.grad is None for p in tiny_swin.parameters())
    assert any(p.grad is not None for p in pyramid.fpn.parameters())


def test_unknown_detector_and_too_small_images(tiny_vit):
    with pytest.raises(VitsslError, match="unknown detector"):
        build_detector(build_pyramid(tiny_vit, 16), "yolo", 3, 48, MEAN, STD)
    with pytest.raises(VitsslError, match="image size"):
        build_detector(build_pyramid(tiny_vit, 16), "faster_rcnn", 3, 8, MEAN, STD)
