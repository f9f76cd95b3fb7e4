"""WebDataset shards: packing a folder, reading it back, and splitting epochs over processes and workers."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitssl.cli import main
from vitssl.data.images import load_rgb
from vitssl.data.shards.dataset import (
    ShardDataset,
    build_shard_dataset,
    build_shard_loader,
    is_shard_spec,
    load_shard_index,
)
from vitssl.data.shards.writer import pack_shards, sample_key
from vitssl.errors import VitsslError

NUM_IMAGES = 24  # 13 cats + 11 dogs, packed 5 per shard: shards of 5, 5, 5, 5 and 4 samples


def write_image(path: Path, seed: int) -> Path:
    """A small random RGB image (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(path)
    return path


def noise_views(image, generator: torch.Generator) -> torch.Tensor:
    """A stand-in view transform: a few numbers drawn from the sample's generator."""
    return torch.rand(3, generator=generator)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for i in range(13):
        write_image(root / "cat" / f"{i}.png", seed=i)
    for i in range(10):
        write_image(root / "dog" / f"d{i}.png", seed=100 + i)
    write_image(root / "dog" / "last.jpg", seed=200)
    return root


@pytest.fixture(scope="module")
def packed(image_folder: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    pack_shards(image_folder, out, shard_size=5, progress=False)
    return out


def dataset(spec: Path | str, **kwargs) -> ShardDataset:
    kwargs.setdefault("transform", noise_views)
    kwargs.setdefault("seed", 0)
    return build_shard_dataset(str(spec), **kwargs)


def worker_indices(data: ShardDataset, worker: int, workers: int) -> list[int]:
    return [sample["index"] for sample in data.worker_samples(worker, workers)]


def test_pack_writes_shards_and_index(packed: Path):
    index = json.loads((packed / "train-index.json").read_text())
    assert index["num_samples"] == NUM_IMAGES and index["num_shards"] == 5
    assert [entry["samples"] for entry in index["shards"]] == [5, 5, 5, 5, 4]
    assert index["classes"] == ["cat", "dog"] and index["skipped"] == 0
    names = set()
    shards = sorted(packed.glob("*.tar"))
    assert len(shards) == 5
    for shard in shards:
        with tarfile.open(shard) as tar:
            names |= set(tar.getnames())
    # The bytes are stored under the file's own extension, with the class index beside them.
    assert f"{sample_key('dog/last.jpg')}.jpg" in names and f"{sample_key('dog/last.jpg')}.cls" in names


def test_webdatasets_own_reader_reads_the_shards(packed: Path):
    import webdataset

    shards = [str(path) for path in sorted(packed.glob("*.tar"))]
    theirs = [
        (s["__key__"], int(s["cls"]), s.get("png", s.get("jpg")))
        for s in webdataset.WebDataset(shards, shardshuffle=False)
    ]
    data = dataset(packed, transform=None, shuffle=False, drop_last=False)
    ours = [(s["key"], s["label"]) for s in data.worker_samples(0, 1)]
    assert [(key, label) for key, label, _ in theirs] == ours and all(raw for _, _, raw in theirs)


def test_packing_order_is_seeded_and_reproducible(image_folder: Path, tmp_path: Path):
    def pack(name: str, **kwargs) -> list[str]:
        result = pack_shards(image_folder, tmp_path / name, shard_size=5, progress=False, **kwargs)
        keys = [s["key"] for s in dataset(result.index, transform=None, shuffle=False).worker_samples(0, 1)]
        return keys

    in_path_order = [sample_key(p.relative_to(image_folder).as_posix()) for p in sorted(image_folder.rglob("*.*"))]
    assert pack("sorted", shuffle=False) == in_path_order
    first, again, other = pack("a"), pack("b"), pack("c", seed=1)
    assert first == again != other and sorted(first) == sorted(in_path_order) and first != in_path_order
    # Fixed tar times: the same images and seed give byte-identical shards.
    assert (tmp_path / "a" / "train-000000.tar").read_bytes() == (tmp_path / "b" / "train-000000.tar").read_bytes()


def test_read_back_gives_the_same_pixels_labels_and_keys(image_folder: Path, packed: Path):
    data = dataset(packed, transform=None, shuffle=False, drop_last=False)
    samples = list(data.worker_samples(0, 1))
    assert [sample["index"] for sample in samples] == list(range(NUM_IMAGES))
    by_key = {sample["key"]: sample for sample in samples}
    paths = sorted(image_folder.rglob("*.*"))
    assert paths
    for path in paths:
        relative = path.relative_to(image_folder).as_posix()
        sample = by_key.pop(sample_key(relative))
        assert sample["label"] == (0 if relative.startswith("cat/") else 1)
        assert np.array_equal(np.asarray(sample["views"]), np.asarray(load_rgb(path)))
    assert not by_key
    assert len(data) == NUM_IMAGES and data.classes == ["cat", "dog"]


@pytest.mark.parametrize("epoch", [0, 1])
def test_two_ranks_two_workers_see_every_sample_once(packed: Path, epoch: int):
    seen: list[list[int]] = []
    for rank in range(2):
        data = dataset(packed, rank=rank, world_size=2, batch_size=3, shuffle_buffer=4)
        data.set_epoch(epoch)
        for worker in range(2):
            seen.append(worker_indices(data, worker, 2))
            assert len(seen[-1]) % 3 == 0  # loader batches never straddle workers
        assert data.batches_per_epoch() == 4
    flat = [index for part in seen for index in part]
    assert sorted(flat) == list(range(NUM_IMAGES))  # no gaps, no duplicates


def test_epochs_differ_in_order_and_drop_last_keeps_batches_equal(packed: Path):
    orders = []
    for epoch in range(2):
        data = dataset(packed, batch_size=5, world_size=2, rank=0)
        data.set_epoch(epoch)
        orders.append(worker_indices(data, 0, 1))
    assert orders[0] != orders[1]
    counts, union = [], set()
    for rank in range(2):
        data = dataset(packed, batch_size=5, world_size=2, rank=rank)
        indices = worker_indices(data, 0, 1)
        counts.append(len(indices))
        assert not union & set(indices)
        union |= set(indices)
    # 24 samples, 2 ranks x batches of 5: 2 batches each, the other 4 samples dropped this epoch.
    assert counts == [10, 10] and len(union) == 20


def batch_field(batch, name: str) -> torch.Tensor:
    """A field of a collated batch, whether the batch is a dict or a dataclass."""
    return batch[name] if isinstance(batch, dict) else getattr(batch, name)


def test_loader_with_workers_resumes_exactly_mid_epoch(packed: Path):
    data = dataset(packed, batch_size=3, shuffle_buffer=4)
    full = list(build_shard_loader(data, batch_size=3, num_workers=2, epoch=1))
    assert len(full) == data.batches_per_epoch() == 8
    assert sorted(torch.cat([batch_field(b, "index") for b in full]).tolist()) == list(range(NUM_IMAGES))
    for workers in (2, 0):
        full = list(build_shard_loader(data, batch_size=3, num_workers=workers, epoch=1))
        resumed = list(build_shard_loader(data, batch_size=3, num_workers=workers, epoch=1, start=3 * 3))
        assert len(resumed) == 5
        for ours, theirs in zip(resumed, full[3:], strict=True):
            assert torch.equal(batch_field(ours, "index"), batch_field(theirs, "index"))
            assert torch.equal(batch_field(ours, "images"), batch_field(theirs, "images"))


def test_views_depend_only_on_seed_epoch_and_key(packed: Path):
    def views_by_key(world_size: int, workers: int, epoch: int, seed: int = 0) -> dict[str, torch.Tensor]:
        found = {}
        for rank in range(world_size):
            data = dataset(packed, rank=rank, world_size=world_size, seed=seed, drop_last=False)
            data.set_epoch(epoch)
            for worker in range(workers):
                found.update({s["key"]: s["views"] for s in data.worker_samples(worker, workers)})
        return found

    single, split = views_by_key(1, 1, epoch=2), views_by_key(2, 2, epoch=2)
    assert single.keys() == split.keys() and all(torch.equal(single[key], split[key]) for key in single)
    other_epoch, other_seed = views_by_key(1, 1, epoch=3), views_by_key(1, 1, epoch=2, seed=1)
    assert not any(torch.equal(single[key], other_epoch[key]) for key in single)
    assert not any(torch.equal(single[key], other_seed[key]) for key in single)


def test_brace_patterns_subsets_and_shards_without_index(packed: Path, tmp_path: Path):
    assert load_shard_index(f"{packed}/train-{{000000..000004}}.tar").counts == [5, 5, 5, 5, 4]
    subset = load_shard_index(f"{packed}/train-{{000001..000002}}.tar::{packed}/train-000004.tar")
    assert subset.counts == [5, 5, 4] and subset.classes == ["cat", "dog"]
    shards = list(packed.glob("*.tar"))
    assert len(shards) == 5
    for shard in shards:
        shutil.copy(shard, tmp_path / shard.name)  # no index beside these: counted from the tar headers
    counted = load_shard_index(f"{tmp_path}/train-{{000000..000004}}.tar")
    assert counted.counts == [5, 5, 5, 5, 4] and counted.classes == []
    assert sorted(worker_indices(dataset(f"{tmp_path}/train-{{000000..000004}}.tar"), 0, 1)) == list(range(24))


def test_is_shard_spec(packed: Path, image_folder: Path):
    for spec in (packed, packed / "train-index.json", f"{packed}/train-{{000000..000004}}.tar", "x/a.tar"):
        assert is_shard_spec(str(spec))
    for spec in (image_folder, "cifar10", "synthetic", "/no/such/folder", "photos-{a,b}"):
        assert not is_shard_spec(str(spec))


def test_corrupt_images_are_skipped_and_counted(tmp_path: Path, make_corrupt):
    for i in range(3):
        write_image(tmp_path / "in" / f"{i}.png", seed=i)
    make_corrupt(tmp_path / "in" / "bad.jpg", "truncated")
    make_corrupt(tmp_path / "in" / "sub" / "junk.png", "garbage")
    result = pack_shards(tmp_path / "in", tmp_path / "out", progress=False)
    assert result.skipped == 2 and result.num_samples == 3 and result.classes == []
    assert sorted(result.bad_paths) == [
        f"{tmp_path}/in/bad.jpg (cannot decode)",
        f"{tmp_path}/in/sub/junk.png (cannot decode)",
    ]
    assert json.loads(result.index.read_text())["skipped"] == 2
    assert {s["label"] for s in dataset(tmp_path / "out", transform=None).worker_samples(0, 1)} == {-1}


def test_undecodable_sample_in_a_shard_borrows_a_neighbour(tmp_path: Path):
    import webdataset

    good = (write_image(tmp_path / "a.png", seed=1)).read_bytes()
    with webdataset.TarWriter(str(tmp_path / "s-000000.tar"), encoder=False) as writer:
        for key, data in (("k0", b"not an image"), ("k1", good), ("k2", good)):
            writer.write({"__key__": key, "png": data})
    data = dataset(f"{tmp_path}/s-000000.tar", shuffle=False, transform=None)
    samples = list(data.worker_samples(0, 1))
    assert [(s["index"], s["skipped"]) for s in samples] == [(0, 1), (1, 0), (2, 0)]
    assert [s["bad_paths"] for s in samples] == [("s-000000.tar/k0 (cannot decode)",), (), ()]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("empty", "no images found"),
        ("missing", "does not exist"),
        ("out_is_file", "is a file, not a folder"),
        ("out_under_file", "cannot create OUT_DIR"),
        ("shard_size", "--shard-size must be a positive"),
        ("prefix", "--prefix"),
        ("all_corrupt", "none of the 1 images"),
    ],
)
def test_bad_packing_inputs_are_one_line_errors(tmp_path: Path, capsys, make_corrupt, setup: str, message: str):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    if setup != "empty":
        write_image(folder / "a.png", seed=0)
    if setup == "missing":
        folder = tmp_path / "nowhere"
    if setup in ("out_is_file", "out_under_file"):
        out.write_text("a file")
        out = out / "sub" if setup == "out_under_file" else out
    extra = {"shard_size": ["--shard-size", "0"], "prefix": ["--prefix", "a/b"]}.get(setup, [])
    if setup == "all_corrupt":
        make_corrupt(folder / "a.png", "garbage")
    assert main(["shards", str(folder), str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not list(tmp_path.rglob("*.tar"))


def test_existing_shards_need_overwrite(image_folder: Path, tmp_path: Path, capsys):
    assert main(["shards", str(image_folder), str(tmp_path), "--shard-size", "10", "--prefix", "p"]) == 0
    assert "wrote 24 images (2 classes) in 3 shard(s)" in capsys.readouterr().out
    assert main(["shards", str(image_folder), str(tmp_path), "--prefix", "p"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["shards", str(image_folder), str(tmp_path), "--prefix", "p", "--overwrite"]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["p-000000.tar", "p-index.json"]


def test_bad_shard_specs_are_one_line_errors(packed: Path, tmp_path: Path):
    cases = {
        f"{packed}/train-{{000000..000009}}.tar": "5 of the 10 shards",
        f"{packed}/train-{{000000..000004.tar": "unbalanced braces",
        str(tmp_path): "holds no *-index.json",
        str(tmp_path / "nothing-index.json"): "does not exist",
    }
    for spec, message in cases.items():
        with pytest.raises(VitsslError, match=re.escape(message)) as info:
            load_shard_index(spec)
        assert "\n" not in str(info.value)
    index = json.loads((packed / "train-index.json").read_text())
    index["shards"][0]["samples"] += 1  # an index that promises more than its shard holds
    lying = tmp_path / "lying"
    shutil.copytree(packed, lying)
    (lying / "train-index.json").write_text(json.dumps(index))
    with pytest.raises(VitsslError, match="fewer than its index lists"):
        list(dataset(lying, shuffle=False, drop_last=False).worker_samples(0, 1))
    (tmp_path / "x-index.json").write_text("{}")
    (tmp_path / "y-index.json").write_text("{}")
    with pytest.raises(VitsslError, match="several shard indexes"):
        load_shard_index(str(tmp_path))
    with pytest.raises(VitsslError, match="fewer than one batch of 16 on each of 2"):
        dataset(packed, batch_size=16, world_size=2)
