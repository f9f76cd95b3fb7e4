"""Tests of the weighted k-NN protocol (DINO, Caron et al. 2021; weighted vote of Wu et al. 2018)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from vitssl.errors import VitsslError
from vitssl.eval.knn import _top_neighbours, format_knn_table, weighted_knn


def _unit(*angles_or_points: tuple[float, float]) -> Tensor:
    return F.normalize(torch.tensor(angles_or_points, dtype=torch.float32), dim=1)


def _clusters(num_classes: int, per_class: int, dim: int, noise: float, seed: int) -> tuple[Tensor, Tensor]:
    """Points around one random centre per class, with labels, class-major."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(1234))
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    points = centres[labels] + noise * torch.randn(len(labels), dim, generator=generator)
    return F.normalize(points, dim=1), labels


def test_hand_computed_example() -> None:
    # Memory (unit vectors in 2-D) and labels:
    #   m0 = (0.90, 0.43589) class 0     m1 = (0.88, 0.47497) class 1
    #   m2 = (0.88, -0.47497) class 1    m3 = (0, 1)         class 2
    # Query q0 = (1, 0), label 1: sims m0 0.90, m1 0.88, m2 0.88, m3 0.
    #   k=2: m0, m1 (m1 and m2 tie; the lower index wins). Votes with T=0.07:
    #        class 0: exp(0.90/0.07) = exp(12.857) = 3.83e5
    #        class 1: exp(0.88/0.07) = exp(12.571) = 2.88e5  -> predicts 0
    #   k=3: m0, m1, m2. class 0: 3.83e5;  class 1: 2 * 2.88e5 = 5.76e5 -> 1
    # Query q1 = (0, 1), label 2: sims m0 0.436, m1 0.475, m2 -0.475, m3 1.0.
    #   k=2: m3, m1. class 2: exp(1/0.07) = 1.6e6 beats class 1: exp(0.475/0.07) = 8.9e2 -> 2
    #   k=3: m3, m1, m0. class 2 still wins -> 2
    # top-1: k=2 -> 1/2 = 50%, k=3 -> 2/2 = 100%. Three classes, so "top-5" is top-3 = 100%.
    s0, s1 = math.sqrt(1 - 0.90**2), math.sqrt(1 - 0.88**2)
    memory = _unit((0.90, s0), (0.88, s1), (0.88, -s1), (0.0, 1.0))
    memory_labels = torch.tensor([0, 1, 1, 2])
    queries = _unit((1.0, 0.0), (0.0, 1.0))
    query_labels = torch.tensor([1, 2])

    results = weighted_knn(memory, memory_labels, queries, query_labels, ks=(2, 3), temperature=0.07)

    assert results == {2: {"top1": 50.0, "top5": 100.0}, 3: {"top1": 100.0, "top5": 100.0}}
    # Each query alone pins down the predicted class: q0 is wrong at k=2 (predicts 0) and right at k=3.
    assert weighted_knn(memory, memory_labels, queries[:1], torch.tensor([0]), ks=(2, 3))[2]["top1"] == 100.0
    assert weighted_knn(memory, memory_labels, queries[:1], torch.tensor([0]), ks=(2, 3))[3]["top1"] == 0.0


def test_weighting_by_similarity_changes_the_answer() -> None:
    # q = (1, 0): m0 = q itself (class 0, sim 1), m1 and m2 at cosine 0.8 (class 1), k = 3.
    # A majority vote says class 1 (two votes against one). With T = 0.07 the weights are
    #   class 0: exp(1/0.07) = 1.6e6   vs   class 1: 2 * exp(0.8/0.07) = 1.8e5  -> class 0.
    # With T = 100 the weights are almost equal (exp(0.01) vs 2 * exp(0.008)): a majority vote -> class 1.
    memory = _unit((1.0, 0.0), (0.8, 0.6), (0.8, -0.6))
    memory_labels = torch.tensor([0, 1, 1])
    query, label = _unit((1.0, 0.0)), torch.tensor([0])

    sharp = weighted_knn(memory, memory_labels, query, label, ks=(3,), temperature=0.07)
    flat = weighted_knn(memory, memory_labels, query, label, ks=(3,), temperature=100.0)

    assert sharp[3]["top1"] == 100.0
    assert flat[3]["top1"] == 0.0


def test_ties_between_neighbours_take_the_lower_memory_index() -> None:
    memory = _unit((1.0, 0.0), (1.0, 0.0), (0.0, 1.0))  # m0 and m1 are identical, with different labels
    query = _unit((1.0, 0.0))
    assert weighted_knn(memory, torch.tensor([1, 0, 0]), query, torch.tensor([1]), ks=(1,))[1]["top1"] == 100.0
    assert weighted_knn(memory, torch.tensor([0, 1, 0]), query, torch.tensor([0]), ks=(1,))[1]["top1"] == 100.0


def test_many_exact_ties_resolve_to_the_lowest_indices() -> None:
    # Ten identical memory points of classes 0..9: every neighbour set is a pure tie. torch.topk alone picks
    # an arbitrary subset (e.g. indices 6, 7, 8 for k=3); the canonical choice is 0, 1, 2, whose equal votes
    # then go to the lowest class, 0. (k < N_train, else the search returns every point: no choice to make.)
    memory = _unit(*[(1.0, 0.0)] * 10)
    results = weighted_knn(memory, torch.arange(10), memory[:1], torch.tensor([0]), ks=(1, 3))
    assert all(r["top1"] == 100.0 for r in results.values())


def test_top_neighbours_are_sorted_best_first_with_ties_by_index() -> None:
    sims = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.5, 1.0, 0.9]])
    values, indices = _top_neighbours(sims, 5)
    assert indices.tolist() == [[1, 2, 3, 5, 6]]
    assert values.tolist() == [[1.0, 1.0, 1.0, 1.0, pytest.approx(0.9)]]
    _, indices = _top_neighbours(sims, 2)
    assert indices.tolist() == [[1, 2]]


def test_ties_between_classes_take_the_lower_class_index() -> None:
    memory = _unit((1.0, 0.0), (1.0, 0.0))
    query = _unit((1.0, 0.0))
    # Both neighbours give class 3 and class 1 the same score; class 1 ranks first.
    results = weighted_knn(memory, torch.tensor([3, 1]), query, torch.tensor([1]), ks=(2,))
    assert results[2]["top1"] == 100.0


def test_three_classes_top5_is_top3() -> None:
    train, train_labels = _clusters(3, 10, 8, noise=0.1, seed=0)
    test, test_labels = _clusters(3, 4, 8, noise=0.1, seed=1)
    results = weighted_knn(train, train_labels, test, test_labels, ks=(5,))
    assert results[5]["top5"] == 100.0


def test_single_class_works() -> None:
    train = F.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    results = weighted_knn(train, torch.zeros(6, dtype=torch.long), train[:2], torch.zeros(2, dtype=torch.long))
    assert all(r == {"top1": 100.0, "top5": 100.0} for r in results.values())


def test_a_thousand_classes() -> None:
    train, train_labels = _clusters(1000, 2, 64, noise=0.2, seed=0)
    test, test_labels = _clusters(1000, 1, 64, noise=0.2, seed=1)
    results = weighted_knn(train, train_labels, test, test_labels, ks=(1, 20), chunk_size=256)
    assert results[1]["top1"] > 95.0
    assert results[20]["top5"] >= results[20]["top1"] > 95.0


def test_one_query_and_k_larger_than_memory_is_clipped_but_reported_as_requested() -> None:
    train, train_labels = _clusters(2, 2, 4, noise=0.1, seed=0)  # 4 memory points
    test, test_labels = train[:1], train_labels[:1]
    results = weighted_knn(train, train_labels, test, test_labels, ks=(10, 200))
    assert set(results) == {10, 200}
    assert results[10] == results[200] == weighted_knn(train, train_labels, test, test_labels, ks=(4,))[4]


def test_duplicate_ks_are_reported_once() -> None:
    train, train_labels = _clusters(2, 3, 4, noise=0.1, seed=0)
    assert list(weighted_knn(train, train_labels, train, train_labels, ks=(3, 1, 3))) == [3, 1]


def test_chunked_equals_unchunked() -> None:
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(120, 8, generator=generator)
    train[60:] = train[:60]  # exact duplicates make neighbour ties, which must resolve the same way per chunk
    train_labels = torch.randint(0, 7, (120,), generator=generator)
    test = torch.cat([torch.randn(30, 8, generator=generator), train[:7]])
    test_labels = torch.randint(0, 7, (37,), generator=generator)

    one_at_a_time = weighted_knn(train, train_labels, test, test_labels, ks=(1, 5, 20, 500), chunk_size=1)
    all_at_once = weighted_knn(train, train_labels, test, test_labels, ks=(1, 5, 20, 500), chunk_size=10_000)
    assert one_at_a_time == all_at_once


def test_unnormalised_features_are_normalised() -> None:
    train, train_labels = _clusters(4, 5, 6, noise=0.3, seed=0)
    test, test_labels = _clusters(4, 3, 6, noise=0.3, seed=1)
    scales = torch.rand(len(train), 1, generator=torch.Generator().manual_seed(0)) * 10 + 0.1
    expected = weighted_knn(train, train_labels, test, test_labels)
    assert weighted_knn(train * scales, train_labels, test * 3.0, test_labels) == expected


def test_separable_clusters_are_classified_perfectly() -> None:
    train, train_labels = _clusters(5, 40, 16, noise=0.05, seed=0)
    test, test_labels = _clusters(5, 20, 16, noise=0.05, seed=1)
    results = weighted_knn(train, train_labels, test, test_labels, ks=(10, 20))
    assert results == {10: {"top1": 100.0, "top5": 100.0}, 20: {"top1": 100.0, "top5": 100.0}}


def test_random_labels_are_near_chance() -> None:
    generator = torch.Generator().manual_seed(0)
    train, test = torch.randn(2000, 32, generator=generator), torch.randn(1000, 32, generator=generator)
    train_labels = torch.randint(0, 10, (2000,), generator=generator)
    test_labels = torch.randint(0, 10, (1000,), generator=generator)
    results = weighted_knn(train, train_labels, test, test_labels, ks=(20,))
    assert 5.0 < results[20]["top1"] < 15.0  # chance is 10%; 1000 queries put 3 sigma at about +-3 points
    assert 40.0 < results[20]["top5"] < 60.0  # chance is 50%


def test_format_knn_table() -> None:
    table = format_knn_table({20: {"top1": 71.234, "top5": 90.0}, 10: {"top1": 70.0, "top5": 89.5}}, "CIFAR-10")
    lines = table.splitlines()
    assert lines[0] == "CIFAR-10"
    assert lines[1].split() == ["k", "top-1", "top-5"]
    assert lines[2].split() == ["10", "70.00", "89.50"]
    assert lines[3].split() == ["20", "71.23", "90.00"]
    assert len({len(line) for line in lines[1:]}) == 1  # aligned columns


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train_labels": torch.zeros(3, dtype=torch.long)}, "train labels have shape"),
        ({"test_labels": torch.zeros(5, dtype=torch.long)}, "test labels have shape"),
        (
            {"train_features": torch.zeros(0, 2), "train_labels": torch.zeros(0, dtype=torch.long)},
            "train set is empty",
        ),
        (
            {"test_features": torch.zeros(0, 2), "test_labels": torch.zeros(0, dtype=torch.long)},
            "test set is empty",
        ),
        ({"test_features": torch.ones(2, 3)}, "differ in width"),
        ({"train_features": torch.ones(4)}, r"must be a \(N, D\) matrix"),
        ({"train_features": torch.full((4, 2), float("nan"))}, "NaN or inf"),
        ({"train_labels": torch.zeros(4)}, "must be integers"),
        ({"train_labels": torch.tensor([0, -1, 0, 1])}, "negative"),
        ({"ks": (0,)}, "positive integer"),
        ({"ks": (10, -2)}, "positive integer"),
        ({"ks": ()}, "at least one value of k"),
        ({"temperature": 0.0}, "temperature must be positive"),
        ({"temperature": -0.07}, "temperature must be positive"),
        ({"chunk_size": 0}, "chunk_size must be positive"),
        ({"num_classes": 1}, "num_classes=1 but a label is 1"),
    ],
)
def test_bad_input_raises_a_clear_error(change: dict, message: str) -> None:
    arguments = {
        "train_features": _unit((1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, -1.0)),
        "train_labels": torch.tensor([0, 1, 0, 1]),
        "test_features": _unit((1.0, 0.1), (0.1, 1.0)),
        "test_labels": torch.tensor([0, 1]),
    }
    arguments.update(change)
    with pytest.raises(VitsslError, match=message):
        weighted_knn(**arguments)
