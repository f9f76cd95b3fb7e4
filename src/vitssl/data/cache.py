"""An in-memory cache of decoded images.

Decoding a JPEG costs far more than building a few small crops of it, so for small-image datasets (CIFAR,
the synthetic set, capped evaluation sets) each image is decoded once, at dataset construction, and kept as
uint8 RGB. The pixels are packed into a few large arrays rather than one array per image: forked loader
workers then share them without copy-on-write touching every page through Python reference counts, and the
dataset pickles quickly when workers are spawned.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from vitssl.data.images import UnreadableImageError, load_rgb
from vitssl.errors import VitsslError

__all__ = ["CACHE_MODES", "DecodedImages", "choose_cache_mode", "decode_images"]

CACHE_MODES = ("auto", "memory", "none")
AUTO_MAX_IMAGES = 200_000
AUTO_MAX_FILE_BYTES = 2 * 1024**3
# Compressed size says little about decoded size (a 50 kB JPEG can be 12 MB of pixels), so "auto" also
# estimates the decoded size from a sample of image headers.
AUTO_MAX_DECODED_BYTES = 6 * 1024**3
_HEADER_SAMPLES = 32
_CHUNK = 4096
_PROGRESS_ABOVE = 2000


class DecodedImages:
    """The uint8 RGB pixels of a list of images, packed into chunked flat arrays.

    Args:
        chunks: Flat uint8 arrays holding the pixels of consecutive images.
        chunk_of: For each image, the chunk holding it.
        offsets: For each image, the offset of its first byte in its chunk.
        shapes: For each image, its (height, width).
    """

    def __init__(
        self, chunks: list[np.ndarray], chunk_of: np.ndarray, offsets: np.ndarray, shapes: np.ndarray
    ) -> None:
        self._chunks = chunks
        self._chunk_of = chunk_of
        self._offsets = offsets
        self._shapes = shapes

    def __len__(self) -> int:
        return len(self._offsets)

    @property
    def nbytes(self) -> int:
        """Bytes of pixel data held."""
        return sum(chunk.nbytes for chunk in self._chunks)

    def array(self, index: int) -> np.ndarray:
        """A read-only (H, W, 3) uint8 view of image ``index``."""
        height, width = (int(v) for v in self._shapes[index])
        start = int(self._offsets[index])
        flat = self._chunks[int(self._chunk_of[index])][start : start + height * width * 3]
        view = flat.reshape(height, width, 3)
        view.flags.writeable = False
        return view

    def image(self, index: int) -> Image.Image:
        """Image ``index`` as a PIL RGB image (a copy: transforms may not write into the cache)."""
        return Image.fromarray(self.array(index))


def _decode(path: Path) -> np.ndarray | UnreadableImageError:
    try:
        return np.asarray(load_rgb(path))
    except UnreadableImageError as err:
        return err


def decode_images(
    paths: Sequence[Path], num_threads: int | None = None, progress: bool = True
) -> tuple[DecodedImages, list[int], list[UnreadableImageError]]:
    """Decode every image of ``paths`` into a :class:`DecodedImages`, skipping unreadable files.

    Decoding runs on a thread pool: PIL releases the GIL while decoding, so threads scale without the cost of
    shipping pixels between processes.

    Args:
        paths: Image files.
        num_threads: Decoding threads; default ``min(8, cpu count)``.
        progress: Show a progress bar for more than 2000 images (only on a terminal).

    Returns:
        The decoded images (readable ones only, in order), the indices into ``paths`` that they came from, and
        the errors of the unreadable files.
    """
    threads = num_threads or min(8, os.cpu_count() or 1)
    chunks: list[np.ndarray] = []
    chunk_of: list[int] = []
    offsets: list[int] = []
    shapes: list[tuple[int, int]] = []
    kept: list[int] = []
    errors: list[UnreadableImageError] = []
    show = progress and len(paths) > _PROGRESS_ABOVE
    with (
        ThreadPoolExecutor(max_workers=threads) as pool,
        tqdm(total=len(paths), desc="decoding images", unit="img", disable=None if show else True) as bar,
    ):
        for start in range(0, len(paths), _CHUNK):
            arrays: list[np.ndarray] = []
            offset = 0
            for index, result in enumerate(pool.map(_decode, paths[start : start + _CHUNK]), start):
                if isinstance(result, UnreadableImageError):
                    errors.append(result)
                    continue
                arrays.append(result.reshape(-1))
                kept.append(index)
                chunk_of.append(len(chunks))
                offsets.append(offset)
                shapes.append((result.shape[0], result.shape[1]))
                offset += result.size
            if arrays:
                chunks.append(np.concatenate(arrays))
            bar.update(min(_CHUNK, len(paths) - start))
    store = DecodedImages(
        chunks,
        np.asarray(chunk_of, dtype=np.int32),
        np.asarray(offsets, dtype=np.int64),
        np.asarray(shapes, dtype=np.int32).reshape(-1, 2),
    )
    return store, kept, errors


def _estimated_decoded_bytes(paths: Sequence[Path]) -> float:
    step = max(1, len(paths) // _HEADER_SAMPLES)
    sizes = []
    for path in paths[::step][:_HEADER_SAMPLES]:
        try:
            with Image.open(path) as image:  # reads the header only
                sizes.append(image.width * image.height * 3)
        except Exception:  # an unreadable file is skipped later; here it just does not count
            continue
    return float(np.mean(sizes)) * len(paths) if sizes else 0.0


def choose_cache_mode(paths: Sequence[Path], requested: str) -> str:
    """Resolve ``requested`` ("auto", "memory" or "none") to "memory" or "none".

    "auto" caches in memory when there are at most 200,000 images, their files total under 2 GiB and their
    decoded pixels are estimated (from a sample of headers) to need under 6 GiB.

    Raises:
        VitsslError: ``requested`` is not one of :data:`CACHE_MODES`.
    """
    if requested not in CACHE_MODES:
        raise VitsslError(f"data.cache must be one of {', '.join(CACHE_MODES)}, not {requested!r}")
    if requested != "auto":
        return requested
    if len(paths) > AUTO_MAX_IMAGES:
        return "none"
    total = 0
    for path in paths:
        try:
            total += path.stat().st_size
        except OSError:
            continue
        if total >= AUTO_MAX_FILE_BYTES:
            return "none"
    return "memory" if _estimated_decoded_bytes(paths) < AUTO_MAX_DECODED_BYTES else "none"
