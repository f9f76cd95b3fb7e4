"""Tests of dataset-level k-NN (vitssl.eval.knn_eval): the trainer's online monitor, and the labelled sets it
shares with the other protocols."""

from __future__ import annotations

import pytest
import torch

from vitssl.config import load_config
from vitssl.errors import VitsslError
from vitssl.eval.knn_eval import KNNMonitor
from vitssl.eval.loading import labelled_sets
from vitssl.models.backbones import build_backbone


def _cfg(tiny_image_folder, *extra: str):
    # only data and crop keys: the monitor reads nothing of the method's section
    base = [f"data.train={tiny_image_folder}", "data.num_workers=0", "crops.global_size=16", "crops.local_size=8"]
    return load_config(None, [*base, *extra])


def test_no_monitor_without_a_query_set(tiny_image_folder) -> None:
    assert KNNMonitor.maybe(_cfg(tiny_image_folder), torch.device("cpu")) is None


def test_monitor_scores_a_backbone_and_restores_its_mode(tiny_image_folder) -> None:
    cfg = _cfg(tiny_image_folder, f"data.val={tiny_image_folder}", "train.knn_k=1", "train.knn_max_val=10")
    monitor = KNNMonitor.maybe(cfg, torch.device("cpu"))
    assert monitor is not None and len(monitor.memory) == 24 and len(monitor.queries) == 10
    torch.manual_seed(0)
    backbone = build_backbone("vit_tiny", patch_size=4, img_size=16, depth=1).train()
    results = monitor.evaluate(backbone)
    # the queries are part of the memory set: each one's nearest neighbour is itself
    assert list(results) == [1] and results[1]["top1"] == 100.0
    assert backbone.training
    assert list(monitor.evaluate(backbone, ks=(3, 5))) == [3, 5]


def test_labelled_sets_default_to_the_run_and_explain_a_missing_set(tiny_image_folder) -> None:
    cfg = _cfg(tiny_image_folder)
    with pytest.raises(VitsslError, match="no labelled folders to probe on; pass --train FOLDER and --val FOLDER"):
        labelled_sets(cfg, None, None, purpose="probe on")
    train, val = labelled_sets(cfg, None, str(tiny_image_folder), max_val=6)
    assert len(train) == 24 and len(val) == 6 and train.classes == val.classes == ["a", "b"]
