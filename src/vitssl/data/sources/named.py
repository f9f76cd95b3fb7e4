"""Resolving a config's dataset string (a folder, or a named dataset) to an image folder.

Named datasets are materialised as image folders in the cache directory once, so that from here on every
dataset is just a folder for :class:`~vitssl.data.sources.folders.ImageFolderDataset`:

* ``synthetic``: the built-in shapes dataset (:mod:`vitssl.data.sources.synthetic`), generated offline;
* ``cifar10``: downloaded with torchvision, then exported as PNG folders.

``name`` picks the split by role (``train`` for role "train", ``test`` for role "val"); ``name:train`` and
``name:test`` pick it explicitly. A named dataset wins over a folder of the same name in the working
directory; write ``./synthetic`` to mean the folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from vitssl.data.sources.discovery import has_class_layout
from vitssl.data.sources.synthetic import ensure_synthetic
from vitssl.errors import VitsslError

__all__ = ["NAMED_DATASETS", "ROLES", "ensure_cifar10_folders", "resolve_dataset"]

NAMED_DATASETS = ("synthetic", "cifar10")
ROLES = {"train": "train", "val": "test"}  # role -> default split of a named dataset
_SPLITS = ("train", "test")
_COMPLETE = ".complete"


def _named_help() -> str:
    return ", ".join(NAMED_DATASETS) + " (optionally with :train or :test)"


def resolve_dataset(spec: str, role: str, cache_dir: str | os.PathLike[str]) -> tuple[Path, bool]:
    """Map a dataset string from the config to an image folder and whether it is labelled.

    Args:
        spec: A named dataset (``synthetic``, ``cifar10``, optionally ``:train``/``:test``) or a folder path.
        role: "train" (pretraining data; labels optional) or "val" (evaluation data; labels required).
        cache_dir: Where named datasets are generated or downloaded.

    Returns:
        ``(root, labelled)``: the folder to load and whether it has the ``root/<class>/<image>`` layout. For
        role "train" a folder counts as labelled when every image lies exactly one level below it.

    Raises:
        VitsslError: Unknown name, missing folder, a "val" folder without class sub-folders, or a failed
            download; each message says what to set instead.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    key = f"data.{role}"
    name, _, split = spec.partition(":")
    if name in NAMED_DATASETS:
        split = split or ROLES[role]
        if split not in _SPLITS:
            raise VitsslError(f"{key}={spec}: unknown split {split!r}; use {name}:train or {name}:test")
        if name == "synthetic":
            return ensure_synthetic(cache_dir) / split, True
        return ensure_cifar10_folders(cache_dir, key, split) / split, True
    root = _resolve_folder(spec, role, key)
    # Pretraining only uses labels for optional monitoring, so a folder counts as labelled only when it is
    # unambiguously root/<class>/<image>: photos nested by date or shard must not pass for classes.
    return root, role == "val" or has_class_layout(root, strict=True)


def _resolve_folder(spec: str, role: str, key: str) -> Path:
    path = Path(spec).expanduser()
    if not path.exists():
        if os.sep not in spec and "/" not in spec and not spec.startswith("."):
            raise VitsslError(
                f"{key}={spec} is neither a named dataset nor an existing folder; use one of "
                f"{_named_help()}, or the path of a folder of images"
            )
        raise VitsslError(f"{key}: folder {path} does not exist; point {key} at a folder of images")
    if not path.is_dir():
        raise VitsslError(f"{key}: {path} is a file, not a folder; point {key} at a folder of images")
    if role == "val" and not has_class_layout(path):
        raise VitsslError(
            f"{key}: {path} has no class sub-folders, but evaluation needs labels; arrange it as "
            f"{path}/<class>/<image> or point {key} at a labelled folder"
        )
    return path


def ensure_cifar10_folders(cache_dir: str | os.PathLike[str], key: str = "data.train", split: str = "train") -> Path:
    """Download CIFAR-10 (once) and export it as ``<cache_dir>/cifar10-folders/{train,test}/<class>/<i>.png``.

    The export is written to a temporary folder and renamed into place when complete.

    Args:
        cache_dir: Holds ``cifar10/`` (torchvision's download) and ``cifar10-folders/`` (the export).
        key: The config key to name in errors.
        split: The split that key wants, for the example in errors.

    Returns:
        The ``cifar10-folders`` root.

    Raises:
        VitsslError: The download failed (e.g. no internet); the message suggests a local folder.
    """
    cache = Path(cache_dir).expanduser()
    root = cache / "cifar10-folders"
    if (root / _COMPLETE).is_file():
        return root
    downloads = {name: _download_cifar10(cache / "cifar10", name == "train", key, split) for name in _SPLITS}
    staging = Path(tempfile.mkdtemp(prefix=".cifar10-folders.tmp-", dir=cache))
    staging.chmod(0o755)  # mkdtemp's private 0700 would hide a shared cache from other users
    try:
        for name, dataset in downloads.items():
            _export(dataset, staging / name, name)
        (staging / _COMPLETE).write_text("cifar10 exported as PNG folders\n")
        try:
            os.rename(staging, root)
        except OSError as err:
            if not (root / _COMPLETE).is_file():
                raise VitsslError(f"cannot create {root} ({err}); delete it and retry") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when the rename succeeded
    return root


def _download_cifar10(folder: Path, train: bool, key: str, split: str) -> Any:
    # Imported here: torchvision takes seconds to import and only this download needs it.
    from torchvision import datasets

    try:
        folder.mkdir(parents=True, exist_ok=True)
        return datasets.CIFAR10(root=str(folder), train=train, download=True)
    except Exception as err:  # network, HTTP, checksum and disk errors all mean the same to the user
        raise VitsslError(
            f"could not download cifar10 ({type(err).__name__}: {err}); set {key} to a local image folder, "
            f"e.g. {key}=/path/to/cifar10/{split}"
        ) from err


def _export(dataset: Any, folder: Path, split: str) -> None:
    """Write a torchvision CIFAR10 split (``data``, ``targets``, ``classes``) as PNG class folders."""
    images: np.ndarray = dataset.data
    labels = [int(label) for label in dataset.targets]
    class_dirs = [folder / name for name in dataset.classes]
    for class_dir in class_dirs:
        class_dir.mkdir(parents=True)
    width = len(str(len(labels) - 1))
    for i in tqdm(range(len(labels)), desc=f"exporting cifar10 {split}", unit="img", disable=None):
        Image.fromarray(images[i]).save(class_dirs[labels[i]] / f"{i:0{width}d}.png")
