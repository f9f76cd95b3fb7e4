"""Finding the images (and their classes) in a folder.

Two layouts are understood:

* labelled: ``root/<class>/<image>``, any nesting below the class folder, classes being the sorted names of
  the folders directly under ``root`` (the layout of ``torchvision.datasets.ImageFolder``);
* unlabelled: every image anywhere below ``root``.

Hidden files and folders (names starting with ``.``, e.g. ``.ipynb_checkpoints``) are ignored. Paths are
sorted by their relative POSIX form so the order, and hence every seeded choice made over indices, is the same
on every machine.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from vitssl.data.images import IMAGE_EXTENSIONS, is_image_file
from vitssl.errors import VitsslError

__all__ = ["FolderListing", "find_images", "has_class_layout", "list_labelled", "list_unlabelled"]

_EXTENSIONS_TEXT = ", ".join(sorted(IMAGE_EXTENSIONS))


@dataclass(frozen=True)
class FolderListing:
    """The images of a folder: ``paths[i]`` has label ``labels[i]`` (-1 when unlabelled)."""

    paths: list[Path]
    labels: list[int]
    classes: list[str]


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _check_folder(root: Path, key: str) -> None:
    if not root.exists():
        raise VitsslError(f"image folder {root} does not exist; point {key} at a folder of images")
    if not root.is_dir():
        raise VitsslError(f"{root} is a file, not a folder; point {key} at a folder of images")


def no_images_error(root: Path, key: str, readable: bool = False) -> VitsslError:
    """The error for a folder without (readable) images, naming the extensions looked for."""
    what = "readable images" if readable else "images"
    return VitsslError(
        f"no {what} found under {root} (looked for {_EXTENSIONS_TEXT}); point {key} at a folder of images"
    )


def find_images(folder: Path) -> list[Path]:
    """All image files anywhere below ``folder``, sorted by relative path; hidden entries skipped."""
    found: list[tuple[str, Path]] = []
    # followlinks: datasets are often assembled from symlinked folders.
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        subdirs[:] = [name for name in subdirs if _visible(name)]
        for name in files:
            if _visible(name) and is_image_file(name):
                path = Path(directory, name)
                found.append((path.relative_to(folder).as_posix(), path))
    found.sort(key=lambda item: item[0])
    return [path for _, path in found]


def _root_images(root: Path) -> list[str]:
    return sorted(
        entry.name
        for entry in os.scandir(root)
        if _visible(entry.name) and entry.is_file() and is_image_file(entry.name)
    )


def _class_folders(root: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(root) if _visible(entry.name) and entry.is_dir())


def list_unlabelled(root: Path, key: str = "data.train") -> FolderListing:
    """Every image below ``root``, each with label -1.

    Args:
        root: The folder to search.
        key: The config key that named ``root``, quoted in error messages.

    Raises:
        VitsslError: ``root`` is missing, not a folder, or holds no images.
    """
    root = Path(root)
    _check_folder(root, key)
    paths = find_images(root)
    if not paths:
        raise no_images_error(root, key)
    return FolderListing(paths=paths, labels=[-1] * len(paths), classes=[])


def list_labelled(root: Path, key: str = "data.train") -> FolderListing:
    """The images of ``root/<class>/...``, labelled by the index of their class in the sorted class names.

    Every visible sub-folder is a class, even an empty one (with a warning), so class indices depend only on
    folder names and stay aligned between a train and a validation folder. Images lying directly in ``root``
    are ignored with a warning.

    Args:
        root: The folder to search.
        key: The config key that named ``root``, quoted in error messages.

    Raises:
        VitsslError: ``root`` is missing, has no class folders, or holds no images.
    """
    root = Path(root)
    _check_folder(root, key)
    classes = _class_folders(root)
    loose = _root_images(root)
    if not classes:
        if loose:
            raise VitsslError(
                f"{root} holds images but no class sub-folders, so it cannot be used as a labelled dataset; "
                f"arrange it as {root}/<class>/<image>, or load it unlabelled"
            )
        raise no_images_error(root, key)
    if loose:
        warnings.warn(
            f"ignoring {len(loose)} image(s) directly in {root} (e.g. {loose[0]}): a labelled folder takes "
            "its images from class sub-folders only",
            stacklevel=3,
        )
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = find_images(root / name)
        if not found:
            warnings.warn(f"class folder {root / name} holds no images", stacklevel=3)
        paths.extend(found)
        labels.extend([label] * len(found))
    if not paths:
        raise no_images_error(root, key)
    return FolderListing(paths=paths, labels=labels, classes=classes)


def has_class_layout(root: Path, strict: bool = False) -> bool:
    """Whether ``root`` looks like ``root/<class>/<image>``.

    Args:
        root: An existing folder.
        strict: Require every image to lie exactly one level below ``root`` (``root/<class>/<image>``, none
            directly in ``root``); otherwise it is enough that some class folder holds an image, at any depth
            (images directly in ``root`` are then ignored by :func:`list_labelled`, with a warning).

    Returns:
        Whether ``root`` can be loaded as a labelled folder (strictly: unambiguously).
    """
    root = Path(root)
    if strict and _root_images(root):
        return False
    any_image = False
    for name in _class_folders(root):
        for path in find_images(root / name):
            any_image = True
            if not strict:
                return True
            if path.parent != root / name:
                return False
    return any_image
