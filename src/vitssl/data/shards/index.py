"""Which WebDataset shards make a dataset, in what fixed order, and how many samples each holds.

A dataset is given as a folder holding shards and one ``<prefix>-index.json`` written by ``vitssl shards``, that
index file itself, or a brace pattern such as ``/data/train-{000000..000123}.tar`` (an index next to the shards
gives their sizes; without one the tar headers are read once). :mod:`vitssl.data.shards.dataset` reads the samples.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitssl.data.shards.writer import INDEX_FORMAT, INDEX_SUFFIX
from vitssl.errors import VitsslError
from vitssl.extras import require

__all__ = ["ShardIndex", "is_shard_spec", "load_shard_index", "sample_members"]

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
# WebDataset's member name rules (webdataset.tariterators): __meta__ members are skipped, and a name splits
# into key and extension at the first dot of its last path component.
_META_MEMBER = re.compile(r"__[^/]*__($|/)")
_KEY_AND_EXTENSION = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


@dataclass(frozen=True)
class ShardIndex:
    """The shards of a dataset in their fixed order, with the samples in each and the class names.

    Attributes:
        shards: The shard files.
        counts: Samples in each shard.
        classes: Class names, ``cls`` being an index into them (empty when unknown or unlabelled).
        spec: What the shards were given as (for messages).
    """

    shards: list[Path]
    counts: list[int]
    classes: list[str]
    spec: str

    @property
    def num_samples(self) -> int:
        """Samples over all shards."""
        return sum(self.counts)

    @property
    def offsets(self) -> list[int]:
        """The index of each shard's first sample in the dataset."""
        starts, total = [], 0
        for count in self.counts:
            starts.append(total)
            total += count
        return starts


def is_shard_spec(spec: str) -> bool:
    """Whether ``spec`` names WebDataset shards rather than an image folder or a named dataset.

    True for a brace pattern or a path ending in ``.tar``/``.tar.gz``/``.tgz``, an ``*-index.json`` file, or
    a folder holding an ``*-index.json`` file. Never raises; a spec that is True here may still fail to load.
    """
    text = str(spec).strip()
    if text.endswith(INDEX_SUFFIX) or text.endswith(_TAR_SUFFIXES):
        return True
    if "{" in text:  # a brace pattern, e.g. train-{000000..000009}.tar or {a,b}.tar::c.tar
        return any(suffix in text for suffix in _TAR_SUFFIXES)
    path = Path(text).expanduser()
    try:
        return path.is_dir() and any(path.glob(f"*{INDEX_SUFFIX}"))
    except OSError:
        return False


def load_shard_index(spec: str, config_key: str = "data.train") -> ShardIndex:
    """The shards named by ``spec``, in their fixed order, with their sample counts and classes.

    Args:
        spec: A folder with shards and one ``<prefix>-index.json``, an index file, or a brace pattern / tar
            path (``/data/train-{000000..000123}.tar``; several patterns may be joined with ``::``).
        config_key: The config key (or argument) that gave ``spec``, quoted in error messages.

    Raises:
        VitsslError: Nothing matches, a shard is missing or unreadable, or the index is invalid.
    """
    text = str(spec).strip()
    path = Path(text).expanduser()
    if text.endswith(INDEX_SUFFIX):
        return _read_index(path, config_key)
    if "{" in text or text.endswith(_TAR_SUFFIXES):
        return _index_of_pattern(text, config_key)
    if path.is_dir():
        return _read_index(_find_index(path, config_key), config_key)
    raise VitsslError(
        f"{config_key}={spec} is neither a folder of shards, an index file nor a .tar pattern; give e.g. "
        "/data/shards or /data/shards/train-{000000..000009}.tar"
    )


def _find_index(folder: Path, config_key: str) -> Path:
    found = sorted(folder.glob(f"*{INDEX_SUFFIX}"))
    if not found:
        raise VitsslError(
            f"{folder} holds no *{INDEX_SUFFIX}; pack images with `vitssl shards IMAGE_FOLDER {folder}`, or set "
            f"{config_key} to a pattern such as {folder}/train-{{000000..000009}}.tar"
        )
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise VitsslError(f"{folder} holds several shard indexes ({names}); set {config_key} to one of them")
    return found[0]


def _load_index_json(path: Path, config_key: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise VitsslError(f"shard index {path} does not exist; check {config_key}") from err
    except (OSError, ValueError) as err:
        raise VitsslError(f"cannot read shard index {path} ({err}); re-pack with `vitssl shards`") from err
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or not isinstance(data.get("shards"), list):
        raise VitsslError(f"{path} is not a shard index written by `vitssl shards`; re-pack, or give a .tar pattern")
    return data


def _read_index(path: Path, config_key: str) -> ShardIndex:
    data = _load_index_json(path, config_key)
    shards = [path.parent / entry["name"] for entry in data["shards"]]
    _check_exist(shards, str(path), config_key)
    counts = [int(entry["samples"]) for entry in data["shards"]]
    return _checked(ShardIndex(shards, counts, list(data.get("classes", [])), str(path)), config_key)


def _index_of_pattern(pattern: str, config_key: str) -> ShardIndex:
    braceexpand = require("braceexpand", "shards", f"a brace pattern in {config_key}")

    try:
        names = [name for part in pattern.split("::") for name in braceexpand.braceexpand(part)]
    except ValueError as err:  # braceexpand.UnbalancedBracesError, missing from its type stub
        raise VitsslError(
            f"{config_key}={pattern} has unbalanced braces; write e.g. train-{{000000..000009}}.tar"
        ) from err
    shards = [Path(name).expanduser() for name in names]
    if len(set(shards)) != len(shards):
        raise VitsslError(f"{config_key}={pattern} names some shards twice; each shard must appear once")
    _check_exist(shards, pattern, config_key)
    counts, classes = _counts_from_indexes(shards)
    if counts is None:
        # No index beside the shards: read the tar headers (every process does, once per run).
        counts, classes = [_count_samples(shard) for shard in shards], []
    return _checked(ShardIndex(shards, counts, classes, pattern), config_key)


def _check_exist(shards: list[Path], spec: str, config_key: str) -> None:
    missing = [shard for shard in shards if not shard.is_file()]
    if missing:
        raise VitsslError(
            f"{len(missing)} of the {len(shards)} shards of {spec} do not exist (e.g. {missing[0]}); check {config_key}"
        )


def _checked(index: ShardIndex, config_key: str) -> ShardIndex:
    if not index.shards or index.num_samples == 0:
        raise VitsslError(f"the shards of {index.spec} hold no samples; check {config_key} or re-pack the images")
    return index


def _counts_from_indexes(shards: list[Path]) -> tuple[list[int] | None, list[str]]:
    """Sample counts from the index files beside the shards, or None when some shard is in none of them."""
    known: dict[Path, tuple[int, tuple[str, ...]]] = {}
    for folder in sorted({shard.parent for shard in shards}):
        for path in sorted(folder.glob(f"*{INDEX_SUFFIX}")):
            try:
                data = _load_index_json(path, "")
            except VitsslError:
                continue  # an unrelated or broken file: the shards can still be counted
            for entry in data["shards"]:
                known[(folder / entry["name"]).resolve()] = (int(entry["samples"]), tuple(data.get("classes", [])))
    found = [known.get(shard.resolve()) for shard in shards]
    if any(entry is None for entry in found):
        return None, []
    class_lists = {entry[1] for entry in found if entry is not None}
    # Labels are only meaningful against one list of class names.
    classes = list(next(iter(class_lists))) if len(class_lists) == 1 else []
    return [entry[0] for entry in found if entry is not None], classes


def _sample_key(name: str) -> tuple[str, str] | None:
    """WebDataset's split of a member name into (key, lower-cased extension), or None for members it ignores.

    The same rules as ``webdataset.tariterators`` (``base_plus_ext`` and its ``__meta__`` filter), written out
    here so that reading shards does not import the whole webdataset package in every training process.
    """
    match = None if _META_MEMBER.match(name) else _KEY_AND_EXTENSION.match(name)
    return None if match is None else (match.group(1), match.group(2).lower())


def sample_members(tar: tarfile.TarFile) -> Iterator[tuple[str, str, tarfile.TarInfo]]:
    """(key, extension, member) for the regular files of a tar that belong to samples, in tar order."""
    for member in tar:
        parts = _sample_key(member.name) if member.isreg() else None
        if parts is not None:
            yield parts[0], parts[1], member


def _count_samples(shard: Path) -> int:
    """Samples in a shard, from its tar headers: runs of members sharing a key, as WebDataset groups them."""
    count, last = 0, None
    try:
        with tarfile.open(shard, "r:*") as tar:
            for key, _, _ in sample_members(tar):
                if key != last:
                    count, last = count + 1, key
    except (tarfile.TarError, OSError) as err:
        raise VitsslError(f"cannot read shard {shard} ({err}); re-pack it with `vitssl shards`") from err
    return count
