"""Pretraining reads WebDataset shards given as data.train (a shard folder or a brace pattern), and a run
interrupted mid-epoch resumes to the same weights as an uninterrupted one."""

from __future__ import annotations

import json

import torch

from conftest import TINY_OVERRIDES
from vitssl.api import build_trainer
from vitssl.config import load_config
from vitssl.data.shards.writer import pack_shards


def _cfg(spec, out, *extra):
    return load_config(
        None,
        [
            f"data.train={spec}",
            *TINY_OVERRIDES,
            "optim.epochs=1",
            "train.log_every=1",
            "model.drop_path=0.1",
            f"train.out_dir={out}",
            *extra,
        ],
    )


def test_pretraining_on_shards_resumes_exactly(tiny_image_folder, tmp_path):
    pack_shards(tiny_image_folder, tmp_path / "shards", shard_size=7)
    pattern = str(tmp_path / "shards" / "train-{000000..000003}.tar")
    straight = build_trainer(_cfg(pattern, tmp_path / "a")).fit()
    assert straight.steps == 6  # 24 images, 4 per step
    first = build_trainer(_cfg(tmp_path / "shards", tmp_path / "b")).fit(stop_at_step=4)
    assert first.steps == 4
    build_trainer(_cfg(tmp_path / "shards", tmp_path / "b")).fit()
    losses = [
        [json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for run in ("a", "b")
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 6
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["method"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["method"]
    assert all(torch.equal(a[k], b[k]) for k in a)
