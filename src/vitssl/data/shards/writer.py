"""Packing an image folder into WebDataset tar shards, with a small JSON index.

Every readable image becomes one sample: its file bytes as stored (under its lower-cased extension, e.g.
``jpg`` or ``png``, so nothing is re-encoded), ``cls`` (the class index, when the folder is labelled
``root/<class>/<image>``) and ``__key__``, a stable id derived from the relative path. Shards are named
``<prefix>-000000.tar``, ``<prefix>-000001.tar``, ... and ``<prefix>-index.json`` records the shard names,
the samples in each and the class names, so readers know the dataset size without scanning the shards. The
index is written last: a folder without one holds an interrupted pack.

The images are packed in a seeded random order, not in path order: a training process reads a few shards at a
time and shuffles only within a buffer, so shards packed class by class would give batches of one or two
classes (the WebDataset documentation also advises shuffling before sharding).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vitssl.data.bad_inputs import ERROR, SKIP, check_policy, entry, file_reason
from vitssl.data.images import UnreadableImageError, load_rgb
from vitssl.data.seeding import derive_seed
from vitssl.data.sources.discovery import has_class_layout, list_labelled, list_unlabelled
from vitssl.errors import VitsslError
from vitssl.extras import require

__all__ = [
    "INDEX_FORMAT",
    "INDEX_SUFFIX",
    "PackResult",
    "index_path",
    "pack_shards",
    "sample_key",
    "shard_name",
]

INDEX_FORMAT = "vitssl-webdataset-shards"
"""The ``format`` field of an index file, checked by readers."""
INDEX_SUFFIX = "-index.json"
"""An index file is ``<prefix>-index.json``, next to its shards."""
INDEX_VERSION = 1

_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_KEY_MAX_CHARS = 80


@dataclass(frozen=True)
class PackResult:
    """What :func:`pack_shards` wrote.

    Attributes:
        index: The index file.
        shards: The shard files, in order.
        counts: Samples in each shard.
        classes: Class names (empty when the folder is unlabelled).
        skipped: Unreadable images left out.
        bad_paths: Their entries, ``"PATH (reason)"`` (see :mod:`vitssl.data.bad_inputs`).
    """

    index: Path
    shards: list[Path]
    counts: list[int]
    classes: list[str]
    skipped: int
    bad_paths: list[str] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        """Samples written over all shards."""
        return sum(self.counts)


def shard_name(prefix: str, number: int) -> str:
    """The file name of shard ``number``, e.g. ``train-000012.tar``."""
    return f"{prefix}-{number:06d}.tar"


def index_path(out_dir: str | os.PathLike[str], prefix: str) -> Path:
    """The index file of the shards ``<out_dir>/<prefix>-*.tar``."""
    return Path(out_dir) / f"{prefix}{INDEX_SUFFIX}"


def sample_key(relative_path: str) -> str:
    """A stable WebDataset ``__key__`` for the image at ``relative_path`` (POSIX, relative to the folder).

    WebDataset splits a tar member name at the first dot of its last component into key and extension, so a
    key may hold no dots; slashes would make keys look like folders. The path without its extension is kept
    readable (unsafe characters become ``_``, long paths are cut) and a short hash of the full relative path
    is appended, which keeps keys unique even for ``a.png`` next to ``a.jpg`` or ``a b.png`` next to ``a_b.png``.
    """
    stem = relative_path.rsplit(".", 1)[0] if "." in relative_path.rsplit("/", 1)[-1] else relative_path
    readable = _KEY_UNSAFE.sub("_", stem.replace("/", "__")).strip("_")[:_KEY_MAX_CHARS] or "image"
    digest = hashlib.blake2b(relative_path.encode("utf-8"), digest_size=4).hexdigest()
    return f"{readable}-{digest}"


def pack_shards(
    folder: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    shard_size: int = 1000,
    prefix: str = "train",
    overwrite: bool = False,
    progress: bool | None = None,
    shuffle: bool = True,
    seed: int = 0,
    on_bad_image: str = SKIP,
) -> PackResult:
    """Pack the images below ``folder`` into WebDataset shards in ``out_dir``.

    The folder is labelled when every image lies in ``folder/<class>/`` (the layout pretraining reads with
    labels); otherwise every image below it is packed without ``cls``. Images are packed in a random order
    drawn from ``seed`` (or in sorted path order), each fully decoded first so that corrupt files are left out
    (counted and named in the result) instead of failing a training run later.

    Args:
        folder: The image folder.
        out_dir: Where the shards and the index go (created if missing).
        shard_size: Samples per shard (the last shard may hold fewer).
        prefix: Shard file names start with this, e.g. ``train`` gives ``train-000000.tar``.
        overwrite: Delete shards and an index already written with this prefix instead of refusing.
        progress: Show a progress bar (None: only on a terminal).
        shuffle: Pack in a random order drawn from ``seed`` (recommended for training); False keeps path order.
        seed: Seed of that order.
        on_bad_image: An unreadable image: "skip" leaves it out (counted in the result and the index), "error"
            stops at the first one (the shards written so far stay, without an index).

    Returns:
        The files written, samples per shard, class names and the number of images left out.

    Raises:
        VitsslError: Bad arguments, a missing or empty folder, no readable image, an unwritable ``out_dir``,
            or shards with this prefix already there (without ``overwrite``).
        UnreadableImageError: With ``on_bad_image="error"``, an image cannot be decoded.
    """
    check_policy(on_bad_image, "on_bad_image")
    root = Path(folder)
    out = Path(out_dir).absolute()
    _check_arguments(shard_size, prefix)
    paths, labels, classes = _list_folder(root)
    if shuffle:
        order = list(range(len(paths)))
        random.Random(derive_seed(seed)).shuffle(order)
        paths, labels = [paths[i] for i in order], [labels[i] for i in order]
    _prepare_out_dir(out, prefix, overwrite)
    counts, bad = _write_shards(root, paths, labels, out, prefix, shard_size, progress, on_bad_image)
    if not counts:
        raise VitsslError(f"none of the {len(paths)} images under {root} is readable; nothing was written to {out}")
    shards = [out / shard_name(prefix, number) for number in range(len(counts))]
    index = _write_index(out, prefix, root, classes, counts, len(bad))
    return PackResult(index=index, shards=shards, counts=counts, classes=classes, skipped=len(bad), bad_paths=bad)


def _check_arguments(shard_size: int, prefix: str) -> None:
    if shard_size < 1:
        raise VitsslError(f"--shard-size must be a positive number of images, not {shard_size}")
    if not _PREFIX_PATTERN.match(prefix):
        raise VitsslError(
            f"--prefix {prefix!r} is not a plain file-name start; use letters, digits, '.', '_' or '-' (e.g. train)"
        )


def _list_folder(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """The images to pack with their labels (-1 when unlabelled) and the class names."""
    if root.is_dir() and has_class_layout(root, strict=True):
        listing = list_labelled(root, key="IMAGE_FOLDER")
    else:
        listing = list_unlabelled(root, key="IMAGE_FOLDER")
    return listing.paths, listing.labels, listing.classes


def _prepare_out_dir(out: Path, prefix: str, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise VitsslError(f"OUT_DIR {out} is a file, not a folder; choose a folder for the shards")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VitsslError(f"cannot create OUT_DIR {out} ({err.strerror}); choose a writable folder") from err
    if not os.access(out, os.W_OK | os.X_OK):
        raise VitsslError(f"OUT_DIR {out} is not writable; choose a writable folder or fix its permissions")
    old = _existing_outputs(out, prefix)
    if old and not overwrite:
        raise VitsslError(
            f"{out} already holds {len(old)} '{prefix}' shard file(s); pass --overwrite to replace them, or choose "
            "another --prefix or OUT_DIR"
        )
    for path in old:
        path.unlink()


def _existing_outputs(out: Path, prefix: str) -> list[Path]:
    shard = re.compile(rf"^{re.escape(prefix)}-\d{{6}}\.tar$")
    found = [path for path in out.iterdir() if shard.match(path.name)]
    index = index_path(out, prefix)
    return sorted(found + ([index] if index.exists() else []))


def _write_shards(
    root: Path,
    paths: list[Path],
    labels: list[int],
    out: Path,
    prefix: str,
    shard_size: int,
    progress: bool | None,
    on_bad_image: str,
) -> tuple[list[int], list[str]]:
    """Write the readable images; returns samples per shard and the entries of the unreadable ones."""
    # heavy to import (several seconds), so only when packing
    webdataset = require("webdataset", "shards", "packing shards")

    # ShardWriter formats the pattern with %, so a % in the folder name must be escaped.
    pattern = str(out).replace("%", "%%") + os.sep + f"{prefix}-%06d.tar"
    writer: Any = None
    counts: dict[str, int] = {}
    bad: list[str] = []
    try:
        for path, label in tqdm(
            list(zip(paths, labels, strict=True)), desc="packing", unit="img", disable=_no_bar(progress)
        ):
            sample = _sample(root, path, label, bad, on_bad_image)
            if sample is None:
                continue
            if writer is None:
                # Created at the first readable image, so a folder of only corrupt files leaves no empty shard.
                # mtime=0 makes the shards byte-identical for the same images; PAX allows long member names.
                writer = webdataset.ShardWriter(
                    pattern,
                    maxcount=shard_size,
                    maxsize=float("inf"),
                    verbose=0,
                    encoder=False,
                    mtime=0,
                    format="PAX_FORMAT",
                )
            writer.write(sample)
            counts[writer.fname] = counts.get(writer.fname, 0) + 1
    except OSError as err:
        raise VitsslError(f"writing shards to {out} failed ({err}); free some space or choose another OUT_DIR") from err
    finally:
        if writer is not None:
            writer.close()
    return [counts[name] for name in sorted(counts)], bad


def _sample(root: Path, path: Path, label: int, bad: list[str], on_bad_image: str) -> dict[str, Any] | None:
    """The WebDataset sample of one image, or None (and its entry recorded) when it cannot be decoded."""
    try:
        load_rgb(path)  # decoding is the only reliable test of a file; the stored bytes stay untouched
    except UnreadableImageError:
        if on_bad_image == ERROR:
            raise
        bad.append(entry(path, file_reason(path)))
        return None
    relative = path.relative_to(root).as_posix()
    sample: dict[str, Any] = {"__key__": sample_key(relative), path.suffix.lower().lstrip("."): path.read_bytes()}
    if label >= 0:
        sample["cls"] = str(label).encode("ascii")
    return sample


def _no_bar(progress: bool | None) -> bool | None:
    # tqdm's disable=None means "only on a terminal".
    return None if progress is None else not progress


def _write_index(out: Path, prefix: str, root: Path, classes: list[str], counts: list[int], skipped: int) -> Path:
    """Write ``<prefix>-index.json`` last, atomically, so its presence means the pack completed."""
    index = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "prefix": prefix,
        "source": str(root.absolute()),
        "labelled": bool(classes),
        "classes": classes,
        "num_samples": sum(counts),
        "num_shards": len(counts),
        "skipped": skipped,
        "shards": [{"name": shard_name(prefix, number), "samples": count} for number, count in enumerate(counts)],
    }
    path = index_path(out, prefix)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path
