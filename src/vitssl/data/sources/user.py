"""A user's own ``torch.utils.data.Dataset`` as pretraining images.

Any map-style dataset whose items are images (PIL images, or ``(C, H, W)`` float tensors in [0, 1]) or
``(image, label)`` pairs trains like an image folder: each item gets the method's views drawn from
``(seed, epoch, index)``, so the run resumes exactly and does not depend on the number of loader workers.
"""

from __future__ import annotations

from typing import Any

from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.functional import to_pil_image

from vitssl.data.seeding import sample_generator
from vitssl.errors import VitsslError


class UserDataset(Dataset[dict[str, Any]]):
    """Wraps ``dataset`` so that its items become the trainer's samples (``views``, ``label``, ``index``).

    Args:
        dataset: A map-style dataset of images or ``(image, label)`` pairs (labels are kept, never used).
        transform: The method's view transform, called as ``transform(image, generator)``.
        seed: The data seed (``train.seed``).
    """

    def __init__(self, dataset: Dataset[Any], transform: Any, seed: int) -> None:
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise VitsslError("pretrain(dataset=...) needs a map-style dataset (with __len__ and __getitem__)")
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose views ``__getitem__`` draws."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        image, label = (item[0], item[1]) if isinstance(item, tuple) else (item, -1)
        views = self.transform(_as_rgb(image, index), sample_generator(self.seed, self.epoch, index))
        label = int(label) if isinstance(label, int | Tensor) else -1
        return {"views": views, "label": label, "index": index, "skipped": 0, "bad_paths": ()}


def _as_rgb(image: Any, index: int) -> Image.Image:
    if isinstance(image, Tensor):
        image = to_pil_image(image)
    if not isinstance(image, Image.Image):
        raise VitsslError(
            f"item {index} of the dataset is a {type(image).__name__}; return a PIL image or a (C, H, W) tensor "
            "in [0, 1] (optionally with a label, as (image, label))"
        )
    return image.convert("RGB")
