"""One detection evaluation of a run: load its backbone and the detection data, train the detector (for the
pretrained network and, when asked, for the same network at initialisation), score it, and write the results
(``detect.json``), the trained detector (``detector.pt``) and its predictions (``detect_predictions.png``) into
the run folder."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any

import torch

from vitssl.detection.dataset import load_detection
from vitssl.detection.figures import plot_detections
from vitssl.detection.model import build_detector, build_pyramid
from vitssl.detection.train import DetectSettings, evaluate_detector, train_detector
from vitssl.detection.types import DetectionSet
from vitssl.eval.sources import DataOverrides, resolve_source, results_dir


@dataclass(frozen=True)
class DetectRequest:
    """What to evaluate and how (``vitssl detect``'s help texts explain each option).

    Attributes:
        checkpoint: Any SOURCE of :mod:`vitssl.eval.sources` (a run, an export, ``timm:``, ``hf:``, a release file).
        data: ``synthetic_det`` or a detection folder (COCO or Pascal VOC layout).
        image_size: Short side of the images; None: the data's native size, else the median short side.
        fpn_channels: Width of the pyramid; None: 256, or 128 for backbones narrower than 384.
        init: ``--init`` weights for the pretrained network, with ``init_strict`` their name and shape checks.
        arch, mean, std: ``--arch``, ``--mean``, ``--std`` for sources that carry no config.
    """

    checkpoint: str
    data: str = "synthetic_det"
    detector: str = "faster_rcnn"
    freeze: bool = False
    epochs: int = 12
    lr: float = 2e-4
    layer_decay: float = 0.75
    batch_size: int = 8
    image_size: int | None = None
    fpn_channels: int | None = None
    max_train: int | None = None
    max_val: int | None = None
    num_workers: int = 0
    device: str = "cpu"
    compare_init: bool = False
    init: str | None = None
    init_strict: bool = True
    arch: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


def default_size(train: DetectionSet) -> int:
    """The median short side of the training images, at most 512 (small images are not blown up)."""
    sides = [min(s.size) for s in train.samples if s.size]
    return min(512, int(statistics.median(sides))) if sides else 512


def run_detection(req: DetectRequest) -> dict[str, Any]:
    """Train and score the detector(s) of ``req``; writes into the run folder and returns what ``detect.json``
    holds (the settings, the data and, per network, ``ap``, ``ap50`` and ``ap75``)."""
    device = req.device
    data = DataOverrides(mean=req.mean, std=req.std)
    cfg, backbone = resolve_source(
        req.checkpoint, arch=req.arch, device=device, init=req.init, init_strict=req.init_strict, data=data
    )
    train, val = load_detection(req.data, cfg.data.cache_dir, req.max_train, req.max_val)
    size = req.image_size or train.native_size or default_size(train)
    channels = req.fpn_channels or (256 if backbone.embed_dim >= 384 else 128)
    s = DetectSettings(
        req.detector, req.freeze, req.epochs, req.lr, req.layer_decay, batch_size=req.batch_size,
        image_size=size, fpn_channels=channels, num_workers=req.num_workers, device=device,
    )  # fmt: skip
    run_dir = results_dir(req.checkpoint)
    run_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for name in ("pretrained", "init") if req.compare_init else ("pretrained",):
        if name == "init":
            backbone = resolve_source(req.checkpoint, arch=req.arch, at_init=True, device=device, data=data)[1]
        torch.manual_seed(s.seed)  # the same pyramid and heads at the start for both networks
        pyramid = build_pyramid(backbone, channels)
        pyramid = pyramid.freeze() if s.freeze else pyramid.unfreeze()
        model = build_detector(pyramid, s.detector, len(train.class_names), size, cfg.data.mean, cfg.data.std)
        results[name] = train_detector(model, pyramid, train, s)
        results[name].update(evaluate_detector(model, val, s))
        if name == "pretrained":
            meta = {"detector": s.detector, "class_names": train.class_names, "image_size": size}
            torch.save({"state_dict": model.state_dict(), "fpn_channels": channels, **meta}, run_dir / "detector.pt")
            plot_detections(model, val, run_dir / "detect_predictions.png", device, title=f"{s.detector}, pretrained")
    payload = {
        "checkpoint": str(req.checkpoint),
        "data": req.data,
        "detector": s.detector,
        "freeze": s.freeze,
        "epochs": s.epochs,
        "lr": s.lr,
        "layer_decay": s.layer_decay,
        "image_size": size,
        "fpn_channels": channels,
        "classes": train.class_names,
        "train_images": len(train.samples),
        "val_images": len(val.samples),
        "data_fixes": {"train": train.fixes, "val": val.fixes},
        **results,
    }
    (run_dir / "detect.json").write_text(json.dumps(payload, indent=2))
    return payload
