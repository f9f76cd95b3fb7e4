"""Fixed, seeded subsets of a dataset, balanced over classes.

Capped datasets serve the online k-NN monitor and fast tests: the subset must be the same every time it is
built (it decides which images the monitor scores), and balanced so a small cap still covers every class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vitssl.data.seeding import derive_seed

__all__ = ["balanced_quotas", "stratified_subset"]


def balanced_quotas(available: Sequence[int], total: int) -> list[int]:
    """How many items to take from each group so the counts are as equal as possible.

    Water-filling: every group gets the same share; a group too small for its share gives all it has and its
    unused share is spread over the others. Leftover units of an uneven split go to the first groups.

    Args:
        available: Items in each group.
        total: Items wanted in all (capped at ``sum(available)``).

    Returns:
        Per-group counts, each at most ``available[g]``, summing to ``min(total, sum(available))``.
    """
    quotas = [0] * len(available)
    remaining = min(total, sum(available))
    open_groups = [g for g, count in enumerate(available) if count > 0]
    while remaining > 0 and open_groups:
        share, extra = divmod(remaining, len(open_groups))
        still_open = []
        for rank, group in enumerate(open_groups):
            want = share + (1 if rank < extra else 0)
            take = min(want, available[group] - quotas[group])
            quotas[group] += take
            remaining -= take
            if quotas[group] < available[group]:
                still_open.append(group)
        open_groups = still_open
    return quotas


def stratified_subset(labels: Sequence[int], max_items: int, seed: int) -> list[int]:
    """Choose ``max_items`` indices, as many from each label as possible, reproducibly.

    Unlabelled data (all labels equal, e.g. -1) is one group, so this is then a plain random subset.

    Args:
        labels: The label of every item.
        max_items: The subset size; larger than ``len(labels)`` keeps everything.
        seed: Chooses which items of each group are kept.

    Returns:
        The chosen indices in increasing order (the dataset keeps its sorted path order).
    """
    if max_items >= len(labels):
        return list(range(len(labels)))
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(label, []).append(index)
    keys = sorted(groups)
    quotas = balanced_quotas([len(groups[key]) for key in keys], max_items)
    chosen: list[int] = []
    for key, quota in zip(keys, quotas, strict=True):
        members = groups[key]
        # One generator per group: a group's choice does not shift when another group changes size.
        generator = torch.Generator().manual_seed(derive_seed(seed, key))
        order = torch.randperm(len(members), generator=generator)[:quota]
        chosen.extend(members[i] for i in order.tolist())
    return sorted(chosen)
