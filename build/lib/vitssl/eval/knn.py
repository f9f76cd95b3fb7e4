"""Weighted k-nearest-neighbour classification of frozen features.

The protocol of DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers",
arXiv 2104.14294, section 4.1 and appendix), which takes its voting rule from Wu et al. 2018 ("Unsupervised
Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018): every query takes the k memory
features most similar to it by cosine, and each of them votes for its own class with weight `exp(sim / T)`.

Unlike the authors' script this works for any number of classes and any number of queries, clips k to the
size of the memory set, and breaks ties deterministically (neighbours: lower memory index first; classes:
lower class index first), so the same features always give the same accuracy.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from vitssl.errors import VitsslError

DEFAULT_KS: tuple[int, ...] = (10, 20, 100, 200)
"""The values of k DINO reports; k=20 is its headline number."""

_TOP5 = 5


def weighted_knn(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    ks: Iterable[int] = DEFAULT_KS,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> dict[int, dict[str, float]]:
    """Classify every test feature by a weighted vote of its k nearest training features.

    Follows DINO (Caron et al. 2021, arXiv 2104.14294) with the weighted vote of Wu et al. 2018: the score
    of class c for query q is `sum over the k nearest memory points m_i of exp(cos(q, m_i) / T) * [y_i = c]`.

    Args:
        train_features: Memory features, shape (N_train, D). Assumed L2-normalised; normalised again here.
        train_labels: Integer class of each memory feature, shape (N_train,).
        test_features: Query features, shape (N_test, D).
        test_labels: Integer class of each query, shape (N_test,).
        ks: Numbers of neighbours to evaluate. A k larger than N_train is clipped to N_train but still
            reported under the requested k.
        temperature: T in `exp(sim / T)`; smaller values give the nearest neighbours more say. DINO uses 0.07.
        num_classes: Number of classes; inferred as `max label + 1` over both sets when None.
        chunk_size: Queries processed at once; bounds memory at about `chunk_size * N_train` floats.

    Returns:
        `{k: {"top1": percent, "top5": percent}}` for every requested k, percentages in [0, 100]. With fewer
        than five classes "top5" is the top-C accuracy (100%).

    Raises:
        VitsslError: If shapes or lengths disagree, a set is empty, a label is out of range, a feature is not
            finite, or k, T or chunk_size is not positive.
    """
    ks = _check_ks(ks)
    _check_positive(temperature=temperature, chunk_size=chunk_size)
    train_features, test_features = _check_features(train_features, test_features)
    train_labels, test_labels = _check_labels(train_labels, test_labels, len(train_features), len(test_features))
    num_classes = _resolve_num_classes(num_classes, train_labels, test_labels)

    device = train_features.device
    train_labels = train_labels.to(device)
    n_train = len(train_features)
    max_k = min(max(ks), n_train)
    correct = {k: torch.zeros(2, dtype=torch.int64) for k in ks}
    for start in range(0, len(test_features), chunk_size):
        queries = test_features[start : start + chunk_size].to(device)
        labels = test_labels[start : start + chunk_size].to(device)
        # Cosine similarity of unit vectors is a dot product; one matmul per chunk keeps memory bounded.
        sims, indices = _top_neighbours(queries @ train_features.T, max_k)
        weights = _vote_weights(sims, temperature)
        neighbour_labels = train_labels[indices]
        # Neighbours are sorted best-first, so every smaller k is a prefix of the same top-max(k) search.
        for k in ks:
            k_eff = min(k, n_train)
            ranking = _rank_classes(neighbour_labels[:, :k_eff], weights[:, :k_eff], num_classes)
            correct[k] += _count_correct(ranking, labels).cpu()

    n = len(test_features)
    return {k: {"top1": 100.0 * c[0].item() / n, "top5": 100.0 * c[1].item() / n} for k, c in correct.items()}


def format_knn_table(results: dict[int, dict[str, float]], title: str | None = None) -> str:
    """Format the output of :func:`weighted_knn` as a small aligned text table.

    Args:
        results: `{k: {"top1": percent, "top5": percent}}`.
        title: Optional line printed above the table.

    Returns:
        The table, one row per k in increasing order, without a trailing newline.
    """
    rows = [f"{'k':>5}  {'top-1':>7}  {'top-5':>7}"]
    rows += [f"{k:>5}  {r['top1']:>7.2f}  {r['top5']:>7.2f}" for k, r in sorted(results.items())]
    if title:
        rows.insert(0, title)
    return "\n".join(rows)


def _top_neighbours(sims: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k largest similarities per row and their memory indices, best first, ties by lower index.

    `torch.topk` does not promise which of several equal values it returns, and duplicate images give exactly
    equal similarities, so the set and its order are made canonical here to keep results reproducible.
    """
    values, indices = sims.topk(k, dim=1)
    # Only rows whose k-th value is tied with entries outside the top-k have an ambiguous neighbour set.
    ambiguous = (sims >= values[:, -1:]).sum(dim=1) > k
    if ambiguous.any():
        rows = ambiguous.nonzero().squeeze(1)
        indices[rows] = _lowest_index_top_k(sims[rows], values[rows, -1:], k)
    # Canonical order inside the set: similarity descending, then index ascending (a stable sort keeps it).
    indices = indices.sort(dim=1).values
    values, order = sims.gather(1, indices).sort(dim=1, descending=True, stable=True)
    return values, indices.gather(1, order)


def _lowest_index_top_k(sims: Tensor, threshold: Tensor, k: int) -> Tensor:
    """Indices of the k largest entries per row, taking entries tied with the threshold by lowest index."""
    above = sims > threshold
    tied = sims == threshold
    still_needed = k - above.sum(dim=1, keepdim=True)
    chosen = above | (tied & (tied.cumsum(dim=1) <= still_needed))
    # nonzero() walks rows in order and columns ascending, and each row has exactly k chosen entries.
    return chosen.nonzero()[:, 1].view(-1, k)


def _vote_weights(sims: Tensor, temperature: float) -> Tensor:
    """`exp(sim / T)`, shifted per query by its best similarity.

    A common factor per query does not change which class wins, and the shift keeps small temperatures from
    overflowing float32 (exp(1 / 0.01) is already out of range).
    """
    return ((sims - sims[:, :1]) / temperature).exp()


def _rank_classes(neighbour_labels: Tensor, weights: Tensor, num_classes: int) -> Tensor:
    """Classes ordered by total vote, best first; equal scores rank by lower class index."""
    scores = torch.zeros(len(weights), num_classes, dtype=weights.dtype, device=weights.device)
    scores.scatter_add_(1, neighbour_labels, weights)
    return scores.sort(dim=1, descending=True, stable=True).indices


def _count_correct(ranking: Tensor, labels: Tensor) -> Tensor:
    """Number of queries whose label is ranked first, and within the first min(5, C), as a (2,) tensor."""
    hits = ranking[:, :_TOP5] == labels[:, None]
    return torch.stack([hits[:, 0].sum(), hits.any(dim=1).sum()])


def _check_ks(ks: Iterable[int]) -> list[int]:
    """Validate the requested k values and drop duplicates, keeping the caller's order."""
    ks = list(ks)
    if not ks:
        raise VitsslError("k-NN needs at least one value of k; pass e.g. ks=(10, 20).")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise VitsslError(f"k-NN k must be a positive integer, got {k!r}; pass values such as 10 or 20.")
    return list(dict.fromkeys(ks))


def _check_positive(**values: float) -> None:
    """Raise if any named value is not strictly positive."""
    for name, value in values.items():
        if not value > 0:
            raise VitsslError(f"k-NN {name} must be positive, got {value!r}; use e.g. the default.")


def _check_features(train: Tensor, test: Tensor) -> tuple[Tensor, Tensor]:
    """Validate both feature matrices and return them as unit-norm float32."""
    for name, feats in (("train", train), ("test", test)):
        if feats.ndim != 2:
            raise VitsslError(
                f"k-NN {name} features must be a (N, D) matrix, got shape {tuple(feats.shape)}; "
                "flatten or pool each feature to one vector."
            )
        if len(feats) == 0:
            raise VitsslError(f"k-NN {name} set is empty; check the dataset path and split.")
        if not torch.isfinite(feats).all():
            raise VitsslError(
                f"k-NN {name} features contain NaN or inf; the model diverged, use an earlier checkpoint."
            )
    if train.shape[1] != test.shape[1]:
        raise VitsslError(
            f"k-NN train and test features differ in width ({train.shape[1]} vs {test.shape[1]}); "
            "extract both with the same backbone."
        )
    # Defensive: the vote assumes cosine similarity, and a cheap re-normalisation makes that true.
    return F.normalize(train.float(), dim=1), F.normalize(test.float(), dim=1)


def _check_labels(train: Tensor, test: Tensor, n_train: int, n_test: int) -> tuple[Tensor, Tensor]:
    """Validate both label vectors against their feature counts and return them as int64."""
    for name, labels, n in (("train", train, n_train), ("test", test, n_test)):
        if labels.shape != (n,):
            raise VitsslError(
                f"k-NN {name} labels have shape {tuple(labels.shape)} but there are {n} {name} features; "
                "pass one integer label per feature."
            )
        if labels.is_floating_point() or labels.is_complex():
            raise VitsslError(f"k-NN {name} labels must be integers, got {labels.dtype}; convert with .long().")
        if (labels < 0).any():
            raise VitsslError(f"k-NN {name} labels contain negative values; map classes to 0..C-1.")
    return train.long(), test.long()


def _resolve_num_classes(num_classes: int | None, *labels: Tensor) -> int:
    """Infer the number of classes from the labels, or check the given number covers them."""
    largest = max(int(t.max()) for t in labels)
    if num_classes is None:
        return largest + 1
    if num_classes <= largest:
        raise VitsslError(
            f"k-NN num_classes={num_classes} but a label is {largest}; pass num_classes >= {largest + 1} or None."
        )
    return num_classes
