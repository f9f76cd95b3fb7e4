"""Embedding a folder of images: L2-normalised pooled features in a ``.npy`` file, plus an index.

Why ``.npy``: numpy is already a dependency, the format is one header and a raw array, so it is written
incrementally into a memory map (``np.lib.format.open_memmap``: memory stays at one batch however many images)
and read back lazily with ``np.load(path, mmap_mode="r")``. Parquet would need pyarrow for no gain on a dense
float matrix. The index (``<name>.json``) lists the images' paths in row order with what produced them.

An unreadable image gets no row and no index entry: it is reported (:func:`vitssl.data.bad_inputs.note`) for
the command's summary line, or, under ``--strict``, stops the command with a one-line error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from vitssl.config import PretrainConfig
from vitssl.data.bad_inputs import entry, file_reason, note
from vitssl.data.build import eval_transform
from vitssl.data.images import UnreadableImageError, is_image_file, load_rgb
from vitssl.data.loading.workers import init_worker
from vitssl.data.sources.discovery import find_images
from vitssl.errors import VitsslError
from vitssl.models.backbones import Backbone


@dataclass
class EmbedResult:
    """The files :func:`embed_images` wrote and the shape of the features."""

    features: Path
    index: Path
    tokens: Path | None
    count: int
    dim: int


class _Images(Dataset):
    """``(image tensor, bad entry)`` per file: an unreadable file gives a blank stand-in and its entry (else "")."""

    def __init__(self, paths: Sequence[Path], cfg: PretrainConfig) -> None:
        self.paths = list(paths)
        self.transform = eval_transform(cfg)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        path = self.paths[i]
        try:
            return self.transform(load_rgb(path)), ""
        except UnreadableImageError:
            size = self.transform.size
            return self.transform(Image.new("RGB", (size, size))), entry(path, file_reason(path))


def list_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """The images to embed and the names recorded for them.

    One folder: every image below it (recursive, sorted; :func:`vitssl.data.sources.discovery.find_images`), named by
    its path relative to the folder. Otherwise each argument must be an image file, named as given.
    """
    items = [Path(p) for p in inputs]
    if len(items) == 1 and items[0].is_dir():
        paths = find_images(items[0])
        if not paths:
            raise VitsslError(f"no images found under {items[0]}; pass a folder of images or image files")
        return paths, [p.relative_to(items[0]).as_posix() for p in paths]
    for path in items:
        if path.is_dir():
            raise VitsslError(f"{path} is a folder; pass one folder, or image files only")
        if not path.is_file():
            raise VitsslError(f"image {path} does not exist; pass a folder of images or existing image files")
        if not is_image_file(path):
            raise VitsslError(f"{path} is not an image file (by its extension); pass images only")
    return items, [str(p) for p in items]


def output_paths(out: str | Path) -> tuple[Path, Path, Path]:
    """``(features .npy, index .json, tokens .npy)`` for ``--out`` (``.npy`` is added when missing)."""
    out = Path(out)
    features = out if out.suffix == ".npy" else out.with_name(out.name + ".npy")
    stem = features.with_suffix("")
    return features, stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".tokens.npy")


def _check_writable(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError as exc:
        raise VitsslError(f"cannot write {path} ({exc.strerror or type(exc).__name__}); pick another --out") from None


@torch.no_grad()
def embed_images(
    cfg: PretrainConfig,
    backbone: Backbone,
    paths: Sequence[Path],
    names: Sequence[str],
    out: str | Path,
    tokens: bool = False,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    run: str = "",
) -> EmbedResult:
    """Embed images with ``backbone`` and the run's evaluation transform, batch by batch, into ``.npy`` files.

    Args:
        cfg: The run's config (its eval transform: resize, centre crop, mean/std).
        backbone: The evaluation backbone, in eval mode, on ``device``.
        paths: The image files, in row order (see :func:`list_inputs`).
        names: What the index records for each (e.g. the path relative to the folder).
        out: The features file (``.npy`` added if missing); the index goes next to it as ``.json``.
        tokens: Also write the final patch tokens, (N, T, D), as they come out of the backbone (not normalised),
            to ``<name>.tokens.npy``.
        batch_size: Images per forward pass.
        num_workers: Data loader processes decoding images.
        device: Where the backbone runs.
        progress: Show a tqdm progress bar.
        run: The run it came from, recorded in the index.

    Returns:
        The files written; row ``i`` of the features is ``index["paths"][i]``, each row of unit L2 norm.
        Unreadable images have no row (see the module docstring).

    Raises:
        VitsslError: Bad arguments, an unwritable ``out``, or no readable image at all.
    """
    if batch_size < 1:
        raise VitsslError(f"--batch-size must be at least 1, got {batch_size}")
    if len(paths) != len(names):
        raise VitsslError(f"embed got {len(paths)} images but {len(names)} names; pass one name per image")
    features_path, index_path, tokens_path = output_paths(out)
    _check_writable(features_path)
    feats = np.lib.format.open_memmap(
        features_path, mode="w+", dtype=np.float32, shape=(len(paths), backbone.embed_dim)
    )
    token_map: np.memmap | None = None
    loader = DataLoader(
        _Images(paths, cfg),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        worker_init_fn=init_worker if num_workers > 0 else None,
    )
    row, kept = 0, []
    batches = tqdm(enumerate(loader), total=len(loader), desc="embed", unit="batch", disable=not progress)
    for number, (images, bad) in batches:
        good = [i for i, text in enumerate(bad) if not text]
        note([text for text in bad if text])  # raises here, in the main process, under --strict
        if not good:
            continue
        out_b = backbone(images[good].to(device))
        n = len(good)
        kept += [names[number * batch_size + i] for i in good]
        feats[row : row + n] = F.normalize(out_b.pooled.float(), dim=-1).cpu().numpy()
        if tokens:
            if token_map is None:  # the token count is known once the first batch went through
                shape = (len(paths), *out_b.tokens.shape[1:])
                token_map = np.lib.format.open_memmap(tokens_path, mode="w+", dtype=np.float32, shape=shape)
            token_map[row : row + n] = out_b.tokens.float().cpu().numpy()
        row += n
    if row == 0:
        raise VitsslError(f"none of the {len(paths)} images is readable; nothing to embed")
    feats.flush()
    if token_map is not None:
        token_map.flush()
    if row < len(paths):  # unreadable images left rows unused at the end: keep only the written ones
        del feats
        _truncate_rows(features_path, row)
        if token_map is not None:
            del token_map
            _truncate_rows(tokens_path, row)
    index = {
        "features": features_path.name,
        "tokens": tokens_path.name if tokens else None,
        "count": row,
        "dim": backbone.embed_dim,
        "l2_normalised": True,
        "run": run,
        "image_size": int(cfg.data.eval_size or cfg.crops.global_size),
        "paths": kept,
    }
    # The index goes last: its presence says the arrays are complete.
    index_path.write_text(json.dumps(index, indent=1) + "\n")
    return EmbedResult(features_path, index_path, tokens_path if tokens else None, row, backbone.embed_dim)


def _truncate_rows(path: Path, rows: int, chunk: int = 4096) -> None:
    """Rewrite the ``.npy`` file at ``path`` keeping its first ``rows`` rows, chunk by chunk (memory stays small)."""
    old = np.load(path, mmap_mode="r")
    temporary = path.with_name(path.name + ".tmp")
    new = np.lib.format.open_memmap(temporary, mode="w+", dtype=old.dtype, shape=(rows, *old.shape[1:]))
    for start in range(0, rows, chunk):
        new[start : start + chunk] = old[start : min(start + chunk, rows)]
    new.flush()
    del new, old
    os.replace(temporary, path)
