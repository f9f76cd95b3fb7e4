"""SiT's views: two augmented, rotated, corrupted views per image, their clean targets and masks, and the
collate step that does the random replace (Atito et al. 2021, arXiv 2104.03602, section 3.1).

Per view: random resized crop -> flip -> colour jitter -> grayscale (PIL, as the other methods' views) ->
rotation by k x 90 degrees (k is the rotation label) -> the clean target -> corruptions -> normalisation. All
randomness comes from the sample's generator, so the views are a function of (seed, epoch, sample index).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vitssl.data.batches import SiTBatch, bad_paths_of
from vitssl.data.views import crop_ops
from vitssl.data.views.multicrop import CropSpec, augment_view
from vitssl.errors import VitsslError
from vitssl.methods.sit.corruptions import CorruptionPipeline, replace_in_batch, replace_within_pairs

__all__ = ["SiTCollate", "SiTViewTransform", "rotate"]

_BICUBIC = Image.Resampling.BICUBIC


def rotate(images: Tensor, k: int | Tensor) -> Tensor:
    """Rotate (..., H, W) images by k x 90 degrees counter-clockwise (exact: a permutation of pixels)."""
    return torch.rot90(images, int(k), dims=(-2, -1))


def _to_unit_tensor(image: Image.Image) -> Tensor:
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))
    return pixels.permute(2, 0, 1).to(torch.float32).div_(255.0)


class SiTViewTransform:
    """Builds SiT's views of one image.

    Args:
        crops: One :class:`CropSpec` per view (SiT: two, both 0.08..1 of the area).
        corruptions: The corruption pipeline applied to every rotated view.
        mean: Per-channel normalisation mean of [0, 1] pixels.
        std: Per-channel normalisation standard deviation.
        rotations: The allowed k (multiples of 90 degrees); k is drawn uniformly among them. [0] disables rotation.
        blur_and_solarize: Also apply each crop's Gaussian blur and solarize (DINO-style views, the masked
            variant's authors); off by default, which draws no random numbers for them (unchanged views).

    Returns (from ``__call__``):
        ``{"views": [corrupted], "targets": [clean], "masks": [(H, W) bool], "replace_masks": [(H, W) bool],
        "rotations": [int]}``, one entry per crop; images are normalised (3, H, W) float32 tensors.
    """

    def __init__(
        self,
        crops: Sequence[CropSpec],
        corruptions: CorruptionPipeline,
        mean: Sequence[float],
        std: Sequence[float],
        rotations: Sequence[int] = (0, 1, 2, 3),
        blur_and_solarize: bool = False,
    ) -> None:
        if not crops:
            raise VitsslError("SiT needs at least one view; give it two crops")
        if not rotations or any(k not in (0, 1, 2, 3) for k in rotations):
            raise VitsslError(f"sit.rotations must be a non-empty list of values in 0..3, got {list(rotations)}")
        self.crops = list(crops)
        self.corruptions = corruptions
        self.rotations = [int(k) for k in rotations]
        self.blur_and_solarize = blur_and_solarize
        self._mean = torch.tensor(list(mean), dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(list(std), dtype=torch.float32).view(3, 1, 1)

    def normalise(self, image: Tensor) -> Tensor:
        return (image - self._mean) / self._std

    def __call__(self, image: Image.Image, generator: torch.Generator) -> dict[str, list[Any]]:
        if image.mode != "RGB":
            image = image.convert("RGB")
        draws = crop_ops.Draws(generator)
        out: dict[str, list[Any]] = {"views": [], "targets": [], "masks": [], "replace_masks": [], "rotations": []}
        for crop in self.crops:
            k = self.rotations[draws.below(len(self.rotations))]
            clean = rotate(_to_unit_tensor(augment_view(image, crop, draws, self.blur_and_solarize)), k)
            corrupted = self.corruptions(clean, draws, generator)
            out["views"].append(self.normalise(corrupted.image))
            out["targets"].append(self.normalise(clean))
            out["masks"].append(corrupted.mask)
            out["replace_masks"].append(corrupted.replace_mask)
            out["rotations"].append(k)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(views={len(self.crops)}, rotations={self.rotations}, {self.corruptions})"


class SiTCollate:
    """Stacks SiT samples view-major and performs the random replace across the batch.

    Replaced rectangles come from the clean view of another sample at the same place: with ``donor="pair"``
    (SiT's default) samples 2k and 2k + 1 donate to each other, which gives the same views with one process or
    several; with ``donor="next"`` sample i takes sample i + 1 (cyclically), which depends on the batch size.
    Both are deterministic, so the batch is a function of the sampler's order and the samples' seeds only.

    Returns (from ``__call__``):
        A :class:`~vitssl.data.batches.SiTBatch`: corrupted ``views``, clean ``targets``, ``masks`` (every
        corrupted pixel, replaced ones included) and ``rotations``, one per view.
    """

    def __init__(self, donor: str = "pair") -> None:
        if donor not in ("pair", "next"):
            raise VitsslError(f"unknown random-replace donor {donor!r}; use 'pair' or 'next'")
        self.donor = donor

    def __call__(self, samples: Sequence[dict[str, Any]]) -> SiTBatch:
        first = samples[0]["views"]
        if not isinstance(first, dict) or "targets" not in first:
            raise TypeError("SiTCollate needs samples built by SiTViewTransform (dicts with views and targets)")
        parts = [s["views"] for s in samples]
        batch = SiTBatch(
            label=torch.tensor([int(s["label"]) for s in samples], dtype=torch.long),
            index=torch.tensor([int(s["index"]) for s in samples], dtype=torch.long),
            skipped=sum(int(s.get("skipped", 0)) for s in samples),
            bad_paths=bad_paths_of(samples),
        )
        for v in range(len(first["views"])):
            views = torch.stack([p["views"][v] for p in parts])
            targets = torch.stack([p["targets"][v] for p in parts])
            masks = torch.stack([p["masks"][v] for p in parts])
            replace = torch.stack([p["replace_masks"][v] for p in parts])
            if len(parts) < 2:
                replace = torch.zeros_like(replace)  # no other image to copy from
            paste = replace_within_pairs if self.donor == "pair" else replace_in_batch
            batch.views.append(paste(views, targets, replace))
            batch.targets.append(targets)
            batch.masks.append(masks | replace)
            batch.rotations.append(torch.tensor([p["rotations"][v] for p in parts], dtype=torch.long))
        return batch
