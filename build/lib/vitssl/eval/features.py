"""Extracting L2-normalised features of a whole dataset with a frozen encoder.

The first half of the k-NN protocol of DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised
Vision Transformers", arXiv 2104.14294): the [CLS] output of the teacher backbone after its final norm,
L2-normalised, for every image of a split. Under `torch.distributed` each process encodes its own share and
every process ends up with the features of all of them, so the k-NN vote that follows sees the whole set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from vitssl.data.bad_inputs import tallied
from vitssl.errors import VitsslError


@torch.no_grad()
def extract_features(
    encode: Callable[[Tensor], Tensor],
    loader: Iterable[Any],
    device: torch.device | str = "cpu",
    progress: bool | str = False,
) -> tuple[Tensor, Tensor]:
    """Encode every batch of `loader` and return L2-normalised features with their labels.

    The caller puts the model in eval mode (DINO evaluates the teacher, whose BatchNorm/dropout must not be in
    training mode); this function only disables gradients and moves data.

    Args:
        encode: Maps images (B, 3, H, W) on `device` to one feature vector per image, (B, D), e.g. a
            backbone's pooled [CLS] output.
        loader: Yields batches with "images" (B, 3, H, W) and "label" (B,): typed batches or dicts (see
            :func:`batch_field`).
        device: Where `encode` runs; the results are returned on the CPU.
        progress: Show a tqdm progress bar when truthy; a string is used as its description.

    Returns:
        `(features, labels)`: float32 (N, D) unit-norm rows on the CPU and int64 (N,) labels, in loader
        order. Under `torch.distributed` both hold the samples of all ranks, concatenated in rank order
        (samples a distributed sampler repeated to even out the ranks are kept, as in the loader).

    Raises:
        VitsslError: If the loader yields nothing (on every rank), a batch lacks "images" or "label", or
            `encode` does not return one vector per image.
    """
    features: list[Tensor] = []
    labels: list[Tensor] = []
    for batch in _batches(loader, progress):
        images, batch_labels = _unpack(batch)
        encoded = encode(images.to(device, non_blocking=True))
        _check_encoded(encoded, len(images))
        # Normalise in float32 on the device: cheap there, and half-precision norms lose accuracy.
        features.append(F.normalize(encoded.float(), dim=1).cpu())
        labels.append(batch_labels.to(torch.int64).cpu())

    local_features = torch.cat(features) if features else torch.zeros(0, 0)
    local_labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64)
    all_features, all_labels = gather_from_all_ranks(local_features, local_labels)
    if len(all_features) == 0:
        raise VitsslError("The feature-extraction loader yielded no images; check the dataset path and split.")
    return all_features, all_labels


def gather_from_all_ranks(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenate every rank's (features, labels) in rank order; the identity in a single process.

    `all_gather` needs equal shapes, while ranks may hold different numbers of samples (an uneven split with
    no padding), so each rank pads to the largest count and the padding is trimmed after the exchange. An
    empty rank may not know D yet, hence D is exchanged too.

    Args:
        features: This rank's (n, D) float features on the CPU (a (0, 0) tensor when it has none).
        labels: This rank's (n,) int64 labels on the CPU.

    Returns:
        All ranks' features (N, D) and labels (N,), on the CPU.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return features, labels
    comm_device = _communication_device()
    sizes = _all_gather_equal(torch.tensor([len(features), features.shape[1]], device=comm_device))
    counts = [int(s[0]) for s in sizes]
    width = max(int(s[1]) for s in sizes)
    padded_rows = max(counts)

    padded_features = torch.zeros(padded_rows, width, device=comm_device)
    if len(features):  # an empty rank's (0, 0) tensor has no columns to copy
        padded_features[: len(features)] = features.to(comm_device)
    padded_labels = torch.zeros(padded_rows, dtype=torch.int64, device=comm_device)
    padded_labels[: len(labels)] = labels.to(comm_device)

    gathered_features = _all_gather_equal(padded_features)
    gathered_labels = _all_gather_equal(padded_labels)
    all_features = torch.cat([f[:n] for f, n in zip(gathered_features, counts, strict=True)]).cpu()
    all_labels = torch.cat([lab[:n] for lab, n in zip(gathered_labels, counts, strict=True)]).cpu()
    return all_features, all_labels


def _all_gather_equal(tensor: Tensor) -> list[Tensor]:
    """`all_gather` of a tensor with the same shape on every rank."""
    out = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(out, tensor)
    return out


def _communication_device() -> torch.device:
    """NCCL only moves CUDA tensors; gloo and the others take CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def batch_field(batch: Any, name: str) -> Any:
    """One field of a loader batch: a typed batch's attribute (``batch.images``) or a dict batch's key.

    Transitional: the loaders are moving from dict batches to small dataclasses, and every evaluation module
    reads its batches through here so that both kinds work until the move is done.
    """
    if isinstance(batch, Mapping):
        return batch[name]
    return getattr(batch, name)


def images_of(batch: Any) -> Tensor:
    """The (B, 3, H, W) images of an evaluation batch."""
    return batch_field(batch, "images")


def labels_of(batch: Any) -> Tensor:
    """The (B,) integer labels of a labelled evaluation batch."""
    return torch.as_tensor(batch_field(batch, "label"))


def _batches(loader: Iterable[Any], progress: bool | str) -> Iterator[Any]:
    """Iterate over the loader, behind a progress bar when asked for one, reporting each batch's unreadable
    images (:func:`vitssl.data.bad_inputs.tallied`)."""
    if not progress:
        return tallied(loader)
    description = progress if isinstance(progress, str) else "features"
    return tallied(tqdm(loader, desc=description, unit="batch", dynamic_ncols=True))


def _unpack(batch: Any) -> tuple[Tensor, Tensor]:
    """The images and labels of one batch, with a clear error when the loader yields something else."""
    try:
        images, labels = images_of(batch), labels_of(batch)
    except (KeyError, AttributeError):
        found = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise VitsslError(
            f"Feature extraction needs batches with keys 'images' and 'label', got {found}; "
            "use a labelled evaluation loader."
        ) from None
    if labels.shape != (len(images),):
        raise VitsslError(
            f"A batch has {len(images)} images but labels of shape {tuple(labels.shape)}; "
            "the loader must yield one integer label per image."
        )
    return images, labels


def _check_encoded(encoded: Tensor, batch_size: int) -> None:
    """Make sure the encoder returned one flat feature vector per image."""
    if encoded.ndim != 2 or len(encoded) != batch_size:
        raise VitsslError(
            f"The encoder returned shape {tuple(encoded.shape)} for {batch_size} images; "
            "pass a function that returns one (B, D) pooled feature per image, e.g. the [CLS] token."
        )
