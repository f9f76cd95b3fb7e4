"""Unreadable inputs, one policy: a tally and its summary line; bad files named by the samples that pass over them
(and so reaching the main process through loader workers); ``error`` as a one-line error; torn shards."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch

from vitssl.data.bad_inputs import BadInputs, collecting, note, tallied
from vitssl.data.images import UnreadableImageError
from vitssl.data.loading.loader import build_loader
from vitssl.data.shards.dataset import ShardReadError, build_shard_dataset
from vitssl.data.shards.writer import pack_shards
from vitssl.data.sources.folders import ImageFolderDataset
from vitssl.errors import VitsslError


def _tensor_view(image, generator: torch.Generator) -> torch.Tensor:
    """A tiny evaluation-style view: one (3, 4, 4) tensor (the pixels do not matter here)."""
    return torch.rand(3, 4, 4, generator=generator)


@pytest.fixture
def bad_folder(tmp_path: Path, make_image, make_corrupt) -> Path:
    """root/{a,b}/ with 3 readable images each, an empty a/x.jpg and a corrupt b/y.png."""
    root = tmp_path / "bad"
    for cls in ("a", "b"):
        for i in range(3):
            make_image(root / cls / f"{i}.png", seed=i)
    make_corrupt(root / "a" / "x.jpg", "empty")
    make_corrupt(root / "b" / "y.png", "garbage")
    return root


def test_tally_counts_each_entry_once_and_names_the_first_few():
    tally = BadInputs(listed=2)
    assert tally.summary() is None and tally.count == 0
    tally.add(["a/x.jpg (empty file)", "b/y.png (cannot decode)", "a/x.jpg (empty file)"])
    tally.add("c/z.png (cannot decode)")
    other = BadInputs()
    other.add(["b/y.png (cannot decode)", "shards/train-000003.tar (torn at sample 17)"])
    tally.merge(other)
    assert (tally.count, tally.bad_images, tally.bad_shards) == (4, 3, 1)
    assert tally.summary() == (
        "vitssl: skipped 3 unreadable images and 1 torn or unreadable shard "
        "(first: a/x.jpg (empty file), b/y.png (cannot decode)); pass --strict to stop at the first one"
    )
    assert tally.summary(training=True).endswith(
        "; set data.on_bad_image=error and data.on_bad_shard=error to stop at the first one"
    )


def test_strict_tally_stops_at_the_first_entry_with_one_line():
    with collecting(strict=True), pytest.raises(UnreadableImageError) as info:
        note("a/x.jpg (empty file)")
    assert "a/x.jpg (empty file)" in str(info.value) and "--strict" in str(info.value)
    assert "\n" not in str(info.value)


def test_loader_workers_report_both_bad_files_to_the_main_process(bad_folder: Path):
    dataset = ImageFolderDataset(bad_folder, labelled=True, transform=_tensor_view, cache="none")
    loader = build_loader(dataset, batch_size=2, num_workers=2, seed=0, shuffle=False, drop_last=False)
    with collecting() as tally:
        batches = list(tallied(loader))
    assert sum(len(batch.index) for batch in batches) == len(dataset) == 8  # stand-ins keep the length
    assert set(tally.entries()) == {f"{bad_folder}/a/x.jpg (empty file)", f"{bad_folder}/b/y.png (cannot decode)"}
    assert tally.summary().startswith("vitssl: skipped 2 unreadable images (first: ")
    assert dataset.num_skipped == 0  # the workers' counters stayed in the workers: the batches carried the paths


def test_on_bad_image_error_is_a_one_line_error(bad_folder: Path):
    dataset = ImageFolderDataset(bad_folder, labelled=True, cache="none", on_bad_image="error")
    bad = [path.name for path in dataset.paths].index("x.jpg")
    with pytest.raises(UnreadableImageError, match="x.jpg") as info:
        dataset[bad]
    assert "\n" not in str(info.value)
    with pytest.raises(VitsslError, match="not a policy"):
        ImageFolderDataset(bad_folder, labelled=True, on_bad_image="ignore")


def _torn_shards(tmp_path: Path, make_image) -> Path:
    """Three shards of 4 images (12 in all), the second cut inside the image of its third sample."""
    for i in range(12):
        make_image(tmp_path / "in" / f"{i:02d}.png", seed=i, size=(24, 24))
    result = pack_shards(tmp_path / "in", tmp_path / "shards", shard_size=4, progress=False)
    torn = result.shards[1]
    with tarfile.open(torn) as tar:
        cut = tar.getmembers()[2].offset_data + 10
    torn.write_bytes(torn.read_bytes()[:cut])
    return tmp_path / "shards"


def test_torn_shard_becomes_stand_ins_and_is_named(tmp_path: Path, make_image):
    shards = _torn_shards(tmp_path, make_image)
    data = build_shard_dataset(str(shards), None, seed=0, shuffle=False, drop_last=False, on_bad_shard="skip")
    samples = list(data.worker_samples(0, 1))
    assert [s["index"] for s in samples] == list(range(12))  # every position yields, so batch counts stay equal
    named = {text for s in samples for text in s["bad_paths"]}
    assert len(named) == 1
    (text,) = named
    assert text == f"{shards}/train-000001.tar (torn at sample 2)"
    assert all(s["skipped"] == 1 for s in samples if s["bad_paths"])
    with pytest.raises(ShardReadError, match="data.on_bad_shard=skip") as info:
        list(build_shard_dataset(str(shards), None, seed=0, shuffle=False, drop_last=False).worker_samples(0, 1))
    assert "\n" not in str(info.value)


def test_a_worker_left_with_only_a_torn_shard_still_yields(tmp_path: Path, make_image):
    shards = _torn_shards(tmp_path, make_image)
    (shards / "train-000001.tar").write_bytes(b"")  # nothing readable at all in the second shard
    data = build_shard_dataset(str(shards), None, seed=0, shuffle=False, drop_last=False, on_bad_shard="skip")
    plan = data.worker_plan(1, 3)  # the second of three workers reads exactly the second shard
    assert [piece[0] for piece in plan.pieces] == [1]
    samples = list(data.worker_samples(1, 3))
    assert len(samples) == 4 and {s["bad_paths"] for s in samples} == {(f"{shards}/train-000001.tar (cannot open)",)}


def test_training_on_a_torn_shard_goes_on_with_skip_and_stops_in_one_line_by_default(
    tmp_path: Path, make_image, capsys
):
    from conftest import TINY_OVERRIDES
    from vitssl.cli import main

    shards = _torn_shards(tmp_path, make_image)
    args = ["pretrain", f"data.train={shards}", *TINY_OVERRIDES, "optim.epochs=1", "train.log_every=1"]
    assert main([*args, f"train.out_dir={tmp_path / 'stopped'}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert "train-000001.tar" in lines[-1] and "data.on_bad_shard=skip" in lines[-1]
    assert main([*args, f"train.out_dir={tmp_path / 'skipped'}", "data.on_bad_shard=skip"]) == 0
    metrics = [json.loads(line) for line in (tmp_path / "skipped" / "metrics.jsonl").read_text().splitlines()]
    assert len([m for m in metrics if "loss" in m]) == 3  # 12 samples, 4 per step: the torn shard's count kept
    assert sum(m.get("skipped_images", 0) for m in metrics) >= 2
