"""A lazily filled in-memory cache of decoded images.

Decoding a JPEG costs far more than building a few small crops of it, so for small-image datasets (CIFAR,
the synthetic set, capped evaluation sets) each image is decoded once, the first time it is read, and kept as
uint8 RGB. Nothing is decoded up front: constructing the cache reads only the image headers, to give each
image a slot of its exact size in one shared-memory buffer, next to a shared "filled" flag per image. Loader
workers, forked or spawned, write into the same memory, so an image one worker decoded is served from memory
to the main process and to every later epoch's workers.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from vitssl.errors import VitsslError

__all__ = ["CACHE_MODES", "ImageCache", "choose_cache_mode", "read_image_sizes"]

CACHE_MODES = ("auto", "memory", "none")
AUTO_MAX_IMAGES = 200_000
AUTO_MAX_FILE_BYTES = 2 * 1024**3
# Compressed size says little about decoded size (a 50 kB JPEG can be 12 MB of pixels), so "auto" also
# estimates the decoded size from a sample of image headers.
AUTO_MAX_DECODED_BYTES = 6 * 1024**3
_HEADER_SAMPLES = 32
_CHUNK = 1024  # headers read per task of the process pool
_MAX_WORKERS = 8
_PROGRESS_ABOVE = 2000
_PROGRESS_DELAY_S = 2.0  # reading headers is usually quicker than this: no bar then

_Result = TypeVar("_Result")


class ImageCache:
    """Slots for the uint8 RGB pixels of a list of images, in shared memory, filled as images are first read.

    The buffers are torch shared-memory tensors: forked workers inherit the mapping, and pickling (for spawned
    workers) passes the memory itself, not a copy. Their size is reserved up front; the system may back the
    pages only as slots are written.

    Args:
        sizes: For each image, its (height, width) from the file header; (0, 0) where the header was
            unreadable, a slot that is never filled.

    Raises:
        VitsslError: The shared memory cannot be reserved (e.g. /dev/shm is too small).
    """

    def __init__(self, sizes: np.ndarray) -> None:
        self._sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        nbytes = self._sizes[:, 0] * self._sizes[:, 1] * 3
        self._offsets = np.concatenate([[0], np.cumsum(nbytes)]).astype(np.int64)
        self._pixel_tensor = _shared_bytes(int(self._offsets[-1]))
        self._flag_tensor = _shared_bytes(len(self._sizes)).zero_()
        self._bind()

    @classmethod
    def for_files(cls, paths: Sequence[Path], num_workers: int | None = None, progress: bool = True) -> ImageCache:
        """An empty cache for ``paths``, sized from their headers (see :func:`read_image_sizes`)."""
        return cls(read_image_sizes(paths, num_workers, progress))

    def __len__(self) -> int:
        return len(self._sizes)

    def __getstate__(self) -> dict[str, Any]:
        # The numpy views would pickle as copies; the tensors pickle as handles to the shared memory.
        state = self.__dict__.copy()
        del state["_pixels"], state["_filled"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._bind()

    @property
    def nbytes(self) -> int:
        """Bytes reserved for pixels."""
        return int(self._offsets[-1])

    @property
    def num_filled(self) -> int:
        """Images held so far, by any process sharing this cache."""
        return int(np.count_nonzero(self._filled))

    def is_filled(self, index: int) -> bool:
        """Whether image ``index`` is held."""
        return bool(self._filled[index])

    def image(self, index: int) -> Image.Image | None:
        """Image ``index`` as a PIL RGB image (a copy: transforms may not write into the cache), or None."""
        if not self._filled[index]:
            return None
        return Image.fromarray(self._slot(index))

    def store(self, index: int, image: Image.Image) -> bool:
        """Keep the pixels of ``image``, decoded from file ``index``, if they fit its slot; whether they did.

        They do not fit when decoding gave another size than the header said (a slot of an unreadable header
        has size 0): that image is then simply not cached.
        """
        pixels = np.asarray(image)
        slot = self._slot(index)
        if image.mode != "RGB" or pixels.shape != slot.shape:
            return False
        slot[...] = pixels
        # Pixels first, then the flag: a process that sees the flag set finds the whole image. Another process
        # may be writing the same slot at the same time, but with the same bytes, so readers never see a mix.
        self._filled[index] = 1
        return True

    def _bind(self) -> None:
        self._pixels = self._pixel_tensor.numpy()
        self._filled = self._flag_tensor.numpy()

    def _slot(self, index: int) -> np.ndarray:
        height, width = (int(v) for v in self._sizes[index])
        start = int(self._offsets[index])
        return self._pixels[start : start + height * width * 3].reshape(height, width, 3)


def _shared_bytes(size: int) -> torch.Tensor:
    """A uint8 tensor of ``size`` bytes created directly in shared memory.

    ``torch.empty(size).share_memory_()`` would first allocate private memory and then copy all of it.
    """
    try:
        storage = torch.UntypedStorage._new_shared(size)
    except RuntimeError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise VitsslError(
            f"cannot reserve {size / 1024**2:.0f} MiB of shared memory for the image cache ({reason}); "
            "set data.cache=none or give the machine a larger /dev/shm"
        ) from err
    return torch.empty(0, dtype=torch.uint8).set_(storage)


def _header_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header of ``path``, or (0, 0) when unreadable (decoding reports it later)."""
    try:
        with Image.open(path) as image:  # parses the header only; decoding waits for load()
            return image.height, image.width
    except Exception:  # decoders of untrusted files raise many exception types, not just OSError
        return 0, 0


def _header_sizes(paths: Sequence[Path]) -> np.ndarray:
    return np.asarray([_header_size(path) for path in paths], dtype=np.int64).reshape(-1, 2)


def _default_workers() -> int:
    """Processes for reading headers: this process's CPUs, shared among the ranks torchrun starts here."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(_MAX_WORKERS, cpus // max(1, local_ranks)))


def _chunk_results(
    function: Callable[[Sequence[Path]], _Result], tasks: list[Sequence[Path]], workers: int
) -> Iterator[_Result]:
    # Processes, not threads: for small files PIL spends its time in Python header parsing, under the GIL.
    # Only "fork" starts workers without re-importing torch; elsewhere (and inside daemonic processes, which
    # cannot have children) the work stays in this process.
    parallel = (
        workers > 1
        and len(tasks) > 1
        and "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )
    if not parallel:
        yield from map(function, tasks)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield from pool.map(function, tasks)


def read_image_sizes(paths: Sequence[Path], num_workers: int | None = None, progress: bool = True) -> np.ndarray:
    """The (height, width) of every image of ``paths`` from its header, (0, 0) where unreadable.

    Args:
        paths: Image files.
        num_workers: Processes reading headers; default: this process's CPUs (at most 8), shared among the
            ranks torchrun starts on this machine.
        progress: Show a progress bar for more than 2000 images, when it takes over 2 s (only on a terminal).

    Returns:
        An (N, 2) int64 array.
    """
    workers = num_workers or _default_workers()
    tasks = [paths[start : start + _CHUNK] for start in range(0, len(paths), _CHUNK)]
    show = progress and len(paths) > _PROGRESS_ABOVE
    sizes: list[np.ndarray] = []
    bar = tqdm(
        total=len(paths),
        desc="reading image sizes",
        unit="img",
        delay=_PROGRESS_DELAY_S,
        disable=None if show else True,
    )
    with bar:
        for task_sizes in _chunk_results(_header_sizes, tasks, workers):
            sizes.append(task_sizes)
            bar.update(len(task_sizes))
    return np.concatenate(sizes) if sizes else np.zeros((0, 2), dtype=np.int64)


def _estimated_decoded_bytes(paths: Sequence[Path]) -> float:
    step = max(1, len(paths) // _HEADER_SAMPLES)
    sizes = [height * width * 3 for height, width in map(_header_size, paths[::step][:_HEADER_SAMPLES])]
    sizes = [size for size in sizes if size > 0]  # an unreadable file is skipped later; here it just does not count
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
