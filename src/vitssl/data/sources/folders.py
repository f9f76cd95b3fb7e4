"""A dataset over a folder of images, labelled by class sub-folder or unlabelled.

Each sample's random views are drawn from a generator seeded by (seed, epoch, index) (see
:mod:`vitssl.data.seeding`), so the views do not depend on the loader's workers or processes, nor on whether
images come from the in-memory cache or from their files. With ``on_bad_image="skip"`` (the default) an
unreadable file never stops a run: the next readable image stands in for it, whether images are cached or not,
and the sample names the file in ``"bad_paths"`` so that the main process can count and report it (see
:mod:`vitssl.data.bad_inputs`); with ``"error"`` the first one is a one-line error.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vitssl.data.bad_inputs import ERROR, SKIP, check_policy, entry, file_reason
from vitssl.data.images import UnreadableImageError, load_rgb
from vitssl.data.loading.sampler import decode_repeat
from vitssl.data.seeding import sample_generator
from vitssl.data.sources.cache import ImageCache, choose_cache_mode
from vitssl.data.sources.discovery import list_labelled, list_unlabelled, no_images_error
from vitssl.data.sources.subset import stratified_subset
from vitssl.errors import VitsslError

__all__ = ["ImageFolderDataset", "ViewTransform"]

ViewTransform = Callable[[Image.Image, torch.Generator], Any]
"""A transform called as ``transform(image, generator)``, drawing all its randomness from ``generator``."""


class ImageFolderDataset(torch.utils.data.Dataset[dict[str, Any]]):
    """Images of a folder, as dicts of views, label, index, a skipped-file count and the skipped files.

    Args:
        root: The folder. Labelled: ``root/<class>/<images, any nesting>``; unlabelled: images anywhere below.
        labelled: Whether class sub-folders give labels; unlabelled images have label -1.
        transform: Called as ``transform(image, generator)`` on the RGB PIL image with this sample's
            generator; None returns the PIL image itself as ``"views"``.
        cache: "memory" keeps each image in shared memory once decoded (nothing is decoded up front; see
            :class:`vitssl.data.sources.cache.ImageCache`), "none" decodes on every access, "auto" picks memory for
            small datasets (see :func:`vitssl.data.sources.cache.choose_cache_mode`). Memory falls back to none,
            with a warning, when "auto" chose it but the shared memory cannot be reserved.
        max_images: Keep a fixed subset of this many images, stratified over classes when labelled. The
            subset is chosen among the files found; an unreadable one in it stays (the next image stands in).
        subset_seed: Seed choosing that subset.
        seed: Seed of the per-sample view generators (set again by ``build_loader``).
        config_key: The config key naming ``root``, quoted in error messages (e.g. "data.val").
        on_bad_image: "skip": the next readable image stands in for an unreadable file, which the sample names
            in ``"bad_paths"``; "error": an unreadable file raises UnreadableImageError (one line).

    Attributes:
        root, labelled, transform, seed, epoch: As given (``epoch`` via :meth:`set_epoch`).
        classes: Sorted class names (empty when unlabelled).
        targets: The label of every image.
        paths: The file of every image.
        cache_mode: "memory" or "none", after resolving "auto".
        image_cache: The :class:`~vitssl.data.sources.cache.ImageCache` in memory mode, else None.
        num_skipped: Unreadable files found so far by this process.
        on_bad_image: As given.

    Raises:
        VitsslError: The folder is missing, holds no (readable) images, a labelled folder has no classes, or
            ``cache="memory"`` and the shared memory for it cannot be reserved.
        UnreadableImageError: With ``on_bad_image="error"``, the first image is unreadable.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        labelled: bool,
        transform: ViewTransform | None = None,
        cache: str = "auto",
        max_images: int | None = None,
        subset_seed: int = 0,
        seed: int = 0,
        config_key: str = "data.train",
        on_bad_image: str = SKIP,
    ) -> None:
        self.on_bad_image = check_policy(on_bad_image, "on_bad_image")
        self.root = Path(root)
        self.labelled = labelled
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.num_skipped = 0
        self._bad: dict[int, str] = {}  # index -> its bad_paths entry
        self._config_key = config_key
        listing = list_labelled(self.root, config_key) if labelled else list_unlabelled(self.root, config_key)
        self.classes = listing.classes
        paths, labels = listing.paths, listing.labels
        if max_images is not None:
            if max_images < 1:
                raise VitsslError(f"max_images must be a positive number of images, not {max_images}")
            keep = stratified_subset(labels, max_images, subset_seed)
            paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
        self.paths: list[Path] = paths
        self.targets: list[int] = labels
        if not self.paths:
            raise no_images_error(self.root, self._config_key, readable=True)
        self.cache_mode = choose_cache_mode(paths, cache)
        self.image_cache = self._make_cache(cache) if self.cache_mode == "memory" else None
        if self.image_cache is None:
            self.cache_mode = "none"
        # Fail now, not at the first batch, when nothing is readable; costs one decode when all is well (and
        # in memory mode that image is then cached).
        self._load(0)

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose views ``__getitem__`` draws (views differ between epochs)."""
        self.epoch = epoch

    def image(self, index: int) -> Image.Image:
        """Image ``index`` as RGB PIL image (raises UnreadableImageError for a bad file)."""
        return self._read(self._check_index(index))

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Sample ``index``: ``{"views", "label", "index", "skipped", "bad_paths"}``.

        ``views`` is ``transform(image, sample_generator(seed, epoch, index))``. When the file is unreadable,
        the next readable image stands in, ``skipped`` counts the files passed over, ``bad_paths`` names them
        (``"PATH (reason)"``) and ``index`` stays the requested one, so the generator, and the sampler's
        bookkeeping, are unchanged.
        """
        index, repeat = decode_repeat(index, len(self))  # repeated augmentation: copy `repeat` of image `index`
        index = self._check_index(index)
        image, source, skipped = self._load(index)
        views: Any = image
        if self.transform is not None:
            views = self.transform(image, sample_generator(self.seed, self.epoch, index, repeat))
        bad = tuple(self._bad[(index + step) % len(self)] for step in range(skipped))
        return {"views": views, "label": self.targets[source], "index": index, "skipped": skipped, "bad_paths": bad}

    def __repr__(self) -> str:
        kind = f"{len(self.classes)} classes" if self.labelled else "unlabelled"
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, {len(self)} images, {kind}, "
            f"cache={self.cache_mode!r}, skipped={self.num_skipped})"
        )

    def _check_index(self, index: int) -> int:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        return index

    def _load(self, index: int) -> tuple[Image.Image, int, int]:
        """The first readable image at or after ``index`` (cyclically), its index, the count passed over.

        Raises UnreadableImageError at the first unreadable file with ``on_bad_image="error"``.
        """
        for step in range(len(self)):
            candidate = (index + step) % len(self)
            if candidate in self._bad:
                continue
            try:
                return self._read(candidate), candidate, step
            except UnreadableImageError:
                if self.on_bad_image == ERROR:
                    raise
                self._mark_bad(candidate)
        raise no_images_error(self.root, self._config_key, readable=True)

    def _mark_bad(self, index: int) -> None:
        # Remembered for the life of this process (a worker lives one epoch), so a bad file is not retried; the
        # samples it is passed over for name it, which is how the main process learns of it.
        path = self.paths[index]
        self._bad[index] = entry(path, file_reason(path))
        self.num_skipped += 1

    def _read(self, index: int) -> Image.Image:
        """Image ``index`` from the cache, else decoded from its file (and then cached when it fits its slot).

        Either way the pixels are those :func:`load_rgb` gives, so caching never changes what a run sees.
        """
        if self.image_cache is not None:
            cached = self.image_cache.image(index)
            if cached is not None:
                return cached
        image = load_rgb(self.paths[index])
        if self.image_cache is not None:
            self.image_cache.store(index, image)
        return image

    def _make_cache(self, requested: str) -> ImageCache | None:
        """An empty cache for the images, or None when "auto" chose memory but cannot reserve it."""
        try:
            return ImageCache.for_files(self.paths)
        except VitsslError as err:
            if requested != "auto":
                raise
            warnings.warn(f"not caching images in memory: {err}", stacklevel=3)
            return None
