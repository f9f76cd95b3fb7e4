"""collate_views and build_loader: crop-major batches, worker-count independence, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vitssl.data.batches import EvalBatch, ViewBatch, adjacent_runs, joined
from vitssl.data.loading.loader import build_loader, collate_views, set_loader_epoch
from vitssl.data.sources.folders import ImageFolderDataset
from vitssl.data.views.multicrop import CIFAR10_MEAN, CIFAR10_STD, EvalTransform, MultiCropTransform, dino_crops


@pytest.fixture
def folder(tmp_path: Path, make_image) -> Path:
    for cls in ("a", "b", "c"):
        for i in range(8):
            make_image(tmp_path / "imgs" / cls / f"{i}.png", seed=100 * ord(cls) + i, size=(20, 16))
    return tmp_path / "imgs"


def _multicrop() -> MultiCropTransform:
    return MultiCropTransform(dino_crops(16, local_count=3, local_size=8), CIFAR10_MEAN, CIFAR10_STD)


def _batches(loader: torch.utils.data.DataLoader) -> list[dict]:
    return list(loader)


def _assert_same(first: list[dict], second: list[dict]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.index, b.index) and torch.equal(a.label, b.label)
        assert all(torch.equal(x, y) for x, y in zip(a.views, b.views, strict=True))


def test_collate_is_crop_major() -> None:
    samples = [
        {
            "views": [torch.full((3, 4, 4), float(i)), torch.full((3, 2, 2), -float(i))],
            "label": i,
            "index": 10 + i,
        }
        for i in range(3)
    ]
    samples[1]["skipped"] = 2
    batch = collate_views(samples)
    assert [tuple(v.shape) for v in batch.views] == [(3, 3, 4, 4), (3, 3, 2, 2)]
    assert batch.views[1][2, 0, 0, 0] == -2.0
    assert batch.label.dtype == torch.long and batch.label.tolist() == [0, 1, 2]
    assert batch.index.tolist() == [10, 11, 12] and batch.skipped == 2


def test_collate_single_tensor_views_as_images() -> None:
    samples = [{"views": torch.zeros(3, 5, 5), "label": 1, "index": i, "skipped": 0} for i in range(4)]
    batch = collate_views(samples)
    assert isinstance(batch, EvalBatch) and batch.images.shape == (4, 3, 5, 5)


def test_collate_rejects_untransformed_images(folder: Path) -> None:
    dataset = ImageFolderDataset(folder, labelled=True)
    with pytest.raises(TypeError, match="transform"):
        collate_views([dataset[0]])


def test_same_batches_with_zero_and_two_workers(folder: Path) -> None:
    dataset = ImageFolderDataset(folder, labelled=True, transform=_multicrop())
    serial = _batches(build_loader(dataset, batch_size=5, num_workers=0, seed=4, epoch=1))
    parallel = _batches(build_loader(dataset, batch_size=5, num_workers=2, seed=4, epoch=1))
    assert len(serial) == 4  # 24 images, whole batches of 5
    assert [tuple(v.shape) for v in serial[0].views] == [(5, 3, 16, 16)] * 2 + [(5, 3, 8, 8)] * 3
    _assert_same(serial, parallel)


def test_epochs_differ_and_set_loader_epoch_switches_both_order_and_views(folder: Path) -> None:
    dataset = ImageFolderDataset(folder, labelled=True, transform=_multicrop())
    loader = build_loader(dataset, batch_size=4, num_workers=0, seed=0)
    epoch0 = _batches(loader)
    set_loader_epoch(loader, 1)
    epoch1 = _batches(loader)
    assert epoch0[0].index.tolist() != epoch1[0].index.tolist()
    set_loader_epoch(loader, 0)
    _assert_same(epoch0, _batches(loader))


def test_mid_epoch_resume_yields_the_remaining_batches_exactly(folder: Path) -> None:
    dataset = ImageFolderDataset(folder, labelled=True, transform=_multicrop())
    full = _batches(build_loader(dataset, batch_size=4, num_workers=0, seed=9, epoch=2))
    resumed_dataset = ImageFolderDataset(folder, labelled=True, transform=_multicrop())
    resumed = build_loader(resumed_dataset, batch_size=4, num_workers=0, seed=9, epoch=2, start=2 * 4)
    assert len(resumed) == len(full) - 2
    _assert_same(full[2:], _batches(resumed))


def test_ranks_split_the_epoch(folder: Path) -> None:
    dataset = ImageFolderDataset(folder, labelled=True, transform=EvalTransform(8, CIFAR10_MEAN, CIFAR10_STD))
    seen = []
    for rank in range(2):
        loader = build_loader(dataset, batch_size=3, num_workers=0, seed=1, rank=rank, world_size=2)
        for batch in loader:
            assert batch.images.shape == (3, 3, 8, 8)
            seen += batch.index.tolist()
    assert sorted(seen) == list(range(24))


def test_skipped_files_are_counted_in_batches(corrupt_folder: Path) -> None:
    dataset = ImageFolderDataset(corrupt_folder, labelled=True, cache="none", transform=_multicrop())
    loader = build_loader(dataset, batch_size=4, num_workers=0, seed=0, shuffle=False, drop_last=False)
    batches = list(loader)
    assert sum(batch.skipped for batch in batches) == 2
    named = {path for batch in batches for path in batch.bad_paths}
    assert {Path(text.split(" (")[0]).name for text in named} == {"1x.jpg", "2x.png"}


def test_crops_of_one_resolution_share_one_buffer_through_workers_and_moves():
    """The loader stacks same-size crops into one buffer (crop-major, values unchanged), which survives the
    worker hand-over and ``Batch.to``; the backbone input is then that buffer itself, not a copy."""

    class Crops(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            big = [torch.full((3, 8, 8), float(i + 10 * v)) for v in range(2)]
            small = [torch.full((3, 4, 4), float(i + 10 * v)) for v in range(2, 5)]
            return {"views": big + small, "label": i, "index": i}

    samples = [Crops()[i] for i in range(4)]
    expected = [torch.stack([s["views"][v] for s in samples]) for v in range(5)]
    for workers in (0, 1):
        loader = torch.utils.data.DataLoader(Crops(), batch_size=4, num_workers=workers, collate_fn=collate_views)
        batch = next(iter(loader)).to("cpu")
        assert all(torch.equal(a, b) for a, b in zip(batch.views, expected, strict=True))
        assert adjacent_runs(batch.views) == [(0, 2), (2, 5)]
        moved = batch.apply(lambda t: t.clone())  # as a device move does: one transfer per resolution
        assert adjacent_runs(moved.views) == [(0, 2), (2, 5)]
        both = joined(moved.views[:2])
        assert both.data_ptr() == moved.views[0].data_ptr() and torch.equal(both, torch.cat(expected[:2]))
    apart = [t.clone() for t in expected[:2]]  # separate buffers: joined falls back to a copy, each moves alone
    assert adjacent_runs(apart) == [(0, 1), (1, 2)] and torch.equal(joined(apart), torch.cat(expected[:2]))
    moved_apart = EvalBatch(images=expected[0]).apply(lambda t: t)  # a plain tensor field is untouched
    assert torch.equal(moved_apart.images, expected[0])
    separate = ViewBatch(views=apart).apply(lambda t: t.clone()).views
    assert [v.shape for v in separate] == [v.shape for v in apart]
    assert all(torch.equal(a, b) for a, b in zip(separate, apart, strict=True))
