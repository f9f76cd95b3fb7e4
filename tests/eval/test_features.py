"""Tests of feature extraction for the k-NN protocol (DINO, Caron et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor, nn

from vitssl.errors import VitsslError
from vitssl.eval.features import batch_field, extract_features


class _TinyEncoder(nn.Module):
    """Flatten a (B, 3, 4, 4) image and project it to 5 dimensions."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3 * 4 * 4, 5)

    def forward(self, images: Tensor) -> Tensor:
        return self.proj(images.flatten(1))


def _loader(batch_sizes: list[int], seed: int = 0, first_label: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    batches, label = [], first_label
    for size in batch_sizes:
        labels = torch.arange(label, label + size)
        batches.append({"images": torch.randn(size, 3, 4, 4, generator=generator), "label": labels})
        label += size
    return batches


def test_shapes_normalisation_and_label_order() -> None:
    torch.manual_seed(0)
    encoder = _TinyEncoder().eval()
    loader = _loader([4, 3, 1])

    features, labels = extract_features(encoder, loader)

    assert features.shape == (8, 5) and features.dtype == torch.float32 and features.device.type == "cpu"
    assert labels.tolist() == list(range(8)) and labels.dtype == torch.int64
    torch.testing.assert_close(features.norm(dim=1), torch.ones(8))
    images = torch.cat([batch["images"] for batch in loader])
    with torch.no_grad():
        torch.testing.assert_close(features, F.normalize(encoder(images), dim=1))


def test_no_gradients_are_tracked_and_progress_bar_works() -> None:
    encoder = _TinyEncoder()
    features, _ = extract_features(encoder, _loader([2, 2]), device="cpu", progress="train features")
    assert not features.requires_grad


def test_labels_given_as_lists_are_accepted() -> None:
    loader = [{"images": torch.randn(2, 3, 4, 4), "label": [7, 3]}]
    _, labels = extract_features(_TinyEncoder(), loader)
    assert labels.tolist() == [7, 3]


@dataclass
class _TypedBatch:
    """Stands in for the loaders' typed batches (attributes instead of dict keys)."""

    images: Tensor
    label: Tensor


def test_typed_batches_give_the_same_features_as_dict_batches() -> None:
    torch.manual_seed(0)
    encoder = _TinyEncoder().eval()
    loader = _loader([3, 2])
    typed = [_TypedBatch(batch["images"], batch["label"]) for batch in loader]
    expected, expected_labels = extract_features(encoder, loader)
    features, labels = extract_features(encoder, typed)
    torch.testing.assert_close(features, expected)
    assert labels.tolist() == expected_labels.tolist()
    assert batch_field(typed[0], "images") is typed[0].images and batch_field(loader[0], "label") is loader[0]["label"]


def test_typed_batch_without_labels_raises() -> None:
    @dataclass
    class Unlabelled:
        images: Tensor

    with pytest.raises(VitsslError, match="keys 'images' and 'label'"):
        extract_features(_TinyEncoder(), [Unlabelled(torch.randn(2, 3, 4, 4))])


def test_empty_loader_raises() -> None:
    with pytest.raises(VitsslError, match="yielded no images"):
        extract_features(_TinyEncoder(), [])


def test_batch_without_labels_raises() -> None:
    with pytest.raises(VitsslError, match="keys 'images' and 'label'"):
        extract_features(_TinyEncoder(), [{"images": torch.randn(2, 3, 4, 4)}])


def test_encoder_returning_tokens_raises() -> None:
    def tokens(images: Tensor) -> Tensor:
        return images.flatten(2).transpose(1, 2)  # (B, N, C): not one vector per image

    with pytest.raises(VitsslError, match="one \\(B, D\\) pooled feature"):
        extract_features(tokens, _loader([2]))


def _distributed_worker(rank: int, world_size: int, folder: str) -> None:
    """Each rank extracts its own uneven share (3 and 2 samples, then 2 and 0) and saves what it got back."""
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)  # the same encoder on every rank
        encoder = _TinyEncoder().eval()
        uneven = extract_features(encoder, _loader([3] if rank == 0 else [2], seed=rank, first_label=10 * rank))
        one_empty = extract_features(encoder, _loader([2]) if rank == 0 else [])
        torch.save({"uneven": uneven, "one_empty": one_empty}, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_distributed_ranks_all_receive_every_feature(tmp_path: Path) -> None:
    mp.spawn(_distributed_worker, args=(2, str(tmp_path)), nprocs=2, join=True)

    torch.manual_seed(0)
    encoder = _TinyEncoder().eval()
    expected_features = torch.cat(
        [
            extract_features(encoder, _loader([3], seed=0))[0],
            extract_features(encoder, _loader([2], seed=1))[0],
        ]
    )
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        features, labels = got["uneven"]
        assert labels.tolist() == [0, 1, 2, 10, 11]  # rank order, padding trimmed
        torch.testing.assert_close(features, expected_features)
        features, labels = got["one_empty"]
        assert features.shape == (2, 5) and labels.tolist() == [0, 1]
