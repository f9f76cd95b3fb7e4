"""COCO box AP through torchmetrics on hand-made predictions with known values."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchmetrics.detection import MeanAveragePrecision

from vitssl.detection.dataset import DetectionImages, load_detection
from vitssl.detection.train import DetectSettings, evaluate_detector, summarize

TRUTH = [{"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0], [40.0, 5.0, 60.0, 25.0]]), "labels": torch.tensor([1, 2])}]


def _score(preds: list[dict]) -> dict:
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
    metric.update(preds, TRUTH)
    return summarize(metric.compute())


def test_perfect_predictions_score_100():
    r = _score([{**TRUTH[0], "scores": torch.tensor([0.9, 0.8])}])
    assert r["ap"] == r["ap50"] == r["ap75"] == 100.0


def test_one_of_two_boxes_found():
    # Both boxes are single objects of their class: class 1 is found (AP 1), class 2 missed (AP 0); mean 0.5.
    pred = {"boxes": TRUTH[0]["boxes"][:1], "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    r = _score([pred])
    assert r["ap"] == pytest.approx(50.0) and r["ap50"] == pytest.approx(50.0)


def test_one_class_half_recall_is_51_of_101_points():
    # Two objects of one class, one found: COCO's 101-point precision is 1 up to recall 0.50, then 0.
    truth = [{"boxes": TRUTH[0]["boxes"], "labels": torch.tensor([1, 1])}]
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
    metric.update([{"boxes": truth[0]["boxes"][:1], "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}], truth)
    assert summarize(metric.compute())["ap"] == pytest.approx(100 * 51 / 101, abs=0.01)


def test_a_loose_box_counts_at_iou_50_not_75():
    # Prediction shifted by 4 px on a 20 px box: IoU = 16*20 / (2*400 - 320) = 0.667.
    shifted = TRUTH[0]["boxes"] + torch.tensor([4.0, 0.0, 4.0, 0.0])
    r = _score([{"boxes": shifted, "scores": torch.tensor([0.9, 0.8]), "labels": TRUTH[0]["labels"]}])
    assert r["ap50"] == 100.0 and r["ap75"] == 0.0


class _Oracle(nn.Module):
    """Returns the ground truth of the images in dataset order: evaluate_detector must score it 100."""

    def __init__(self, dataset: DetectionImages) -> None:
        super().__init__()
        self.targets = [dataset[i][1] for i in range(len(dataset))]
        self.seen = 0

    def forward(self, images: list[torch.Tensor]) -> list[dict]:
        out = []
        for _ in images:
            t = self.targets[self.seen]
            out.append({"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))})
            self.seen += 1
        return out


def test_evaluate_detector_scores_an_oracle_100(tiny_det_data):
    _, val = load_detection(str(tiny_det_data), "unused")
    r = evaluate_detector(_Oracle(DetectionImages(val)), val, DetectSettings(batch_size=3, progress=False))
    assert r["ap"] == r["ap50"] == r["ap75"] == 100.0
