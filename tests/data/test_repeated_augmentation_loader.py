"""data.repeated_augmentation reaches the training loader: copies of an image in one epoch, each with its own views."""

from __future__ import annotations

import torch

from conftest import TINY_OVERRIDES
from vitssl.config import load_config
from vitssl.data.build import build_pretrain_data
from vitssl.methods import build_method


def test_repeated_copies_get_different_views(tiny_image_folder, tmp_path):
    cfg = load_config(
        None,
        [f"data.train={tiny_image_folder}", *TINY_OVERRIDES, "data.batch_size=12", "data.repeated_augmentation=3"],
    )
    method = build_method(cfg)
    data = build_pretrain_data(cfg, method.views, method.train_transform(), method.train_collate())
    batches = list(data.batches(0))
    indices = torch.cat([b.index for b in batches]).tolist()
    assert len(indices) == 24 and len(set(indices)) == 8  # 8 distinct images, 3 copies each
    first = batches[0]
    by_index: dict[int, list[int]] = {}
    for row, index in enumerate(first.index.tolist()):
        by_index.setdefault(index, []).append(row)
    rows = next(r for r in by_index.values() if len(r) > 1)
    assert not torch.equal(first.views[0][rows[0]], first.views[0][rows[1]])
