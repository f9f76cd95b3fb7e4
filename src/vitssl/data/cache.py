"""An in-memory cache of decoded images.

Decoding a JPEG costs far more than building a few small crops of it, so for small-image datasets (CIFAR,
the synthetic set, capped evaluation sets) each image is decoded once, at dataset construction, and kept as
uint8 RGB. The pixels are packed into a few large arrays rather than one array per image: forked loader
workers then share them without copy-on-write touching every page through Python reference counts, and the
dataset pickles quickly when workers are spawned.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
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
_CHUNK = 1024  # images per decoding task and per packed array
_MAX_WORKERS = 8
_PROGRESS_ABOVE = 2000


class DecodedImages:
    """The uint8 RGB pixels of a list of images, packed into chunked flat arrays.

    Args:
        chunks: Flat uint8 arrays holding the pixels of consecutive images.
        chunk_of: For each image, the chunk holding it.
        offsets: For each image, the offset of its first byte in its chunk.
        shapes: For each image, its (height, width).
    """

    def __init__(self, chunks: list[np.ndarray], chunk_of: np.ndarray, offsets: np.ndarray, shapes: np.ndarray) -> None:
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


_Chunk = tuple[np.ndarray, np.ndarray, list[int], list[str]]


def _decode_chunk(paths: Sequence[Path]) -> _Chunk:
    """Decode ``paths`` into (flat pixels, (k, 2) shapes, indices of the readable ones, error messages)."""
    arrays: list[np.ndarray] = []
    shapes: list[tuple[int, int]] = []
    kept: list[int] = []
    errors: list[str] = []
    for index, path in enumerate(paths):
        try:
            pixels = np.asarray(load_rgb(path))
        except UnreadableImageError as err:
            errors.append(str(err))
            continue
        arrays.append(pixels.reshape(-1))
        shapes.append((pixels.shape[0], pixels.shape[1]))
        kept.append(index)
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.uint8)
    return flat, np.asarray(shapes, dtype=np.int32).reshape(-1, 2), kept, errors


def default_decode_workers() -> int:
    """Processes for decoding: this process's CPUs, shared among the ranks torchrun starts on this machine."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(_MAX_WORKERS, cpus // max(1, local_ranks)))


def _chunk_results(tasks: list[Sequence[Path]], workers: int) -> Iterator[_Chunk]:
    # Processes, not threads: for small files PIL spends its time in Python header parsing, under the GIL.
    # Only "fork" starts workers without re-importing torch; elsewhere (and inside daemonic processes, which
    # cannot have children) decoding stays in this process.
    parallel = (
        workers > 1
        and len(tasks) > 1
        and "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )
    if not parallel:
        yield from map(_decode_chunk, tasks)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield from pool.map(_decode_chunk, tasks)


def decode_images(
    paths: Sequence[Path], num_workers: int | None = None, progress: bool = True
) -> tuple[DecodedImages, list[int], list[UnreadableImageError]]:
    """Decode every image of ``paths`` into a :class:`DecodedImages`, skipping unreadable files.

    Args:
        paths: Image files.
        num_workers: Decoding processes; default :func:`default_decode_workers`.
        progress: Show a progress bar for more than 2000 images (only on a terminal).

    Returns:
        The decoded images (readable ones only, in order), the indices into ``paths`` that they came from, and
        the errors of the unreadable files.
    """
    workers = num_workers or default_decode_workers()
    tasks = [paths[start : start + _CHUNK] for start in range(0, len(paths), _CHUNK)]
    chunks: list[np.ndarray] = []
    chunk_of: list[np.ndarray] = []
    offsets: list[np.ndarray] = []
    shapes: list[np.ndarray] = []
    kept: list[int] = []
    errors: list[UnreadableImageError] = []
    show = progress and len(paths) > _PROGRESS_ABOVE
    with tqdm(total=len(paths), desc="decoding images", unit="img", disable=None if show else True) as bar:
        for task, (flat, task_shapes, task_kept, task_errors) in enumerate(_chunk_results(tasks, workers)):
            sizes = task_shapes[:, 0].astype(np.int64) * task_shapes[:, 1] * 3
            offsets.append(np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64))
            chunk_of.append(np.full(len(task_kept), len(chunks), dtype=np.int32))
            chunks.append(flat)
            shapes.append(task_shapes)
            kept.extend(task * _CHUNK + index for index in task_kept)
            errors.extend(UnreadableImageError(message) for message in task_errors)
            bar.update(len(tasks[task]))
    store = DecodedImages(
        chunks,
        np.concatenate(chunk_of) if chunk_of else np.zeros(0, dtype=np.int32),
        np.concatenate(offsets) if offsets else np.zeros(0, dtype=np.int64),
        np.concatenate(shapes) if shapes else np.zeros((0, 2), dtype=np.int32),
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
