"""From a config to datasets: the pretraining set with the method's views, and labelled evaluation sets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import Dataset

from vitssl.config import PretrainConfig
from vitssl.data.batches import ViewBatch
from vitssl.data.pretrain import PretrainData
from vitssl.data.shards.dataset import build_shard_dataset, is_shard_spec
from vitssl.data.sources.folders import ImageFolderDataset, ViewTransform
from vitssl.data.sources.named import resolve_dataset
from vitssl.data.sources.user import UserDataset
from vitssl.data.views.multicrop import CropSpec, EvalTransform, MultiCropTransform
from vitssl.errors import VitsslError


def build_pretrain_dataset(
    cfg: PretrainConfig, views: Sequence[CropSpec], transform: ViewTransform | None = None
) -> ImageFolderDataset:
    """The training images, each turned into the method's views (labels are kept but never used); ``transform``
    replaces the default multi-crop transform of ``views`` (e.g. SiT's rotated, corrupted views)."""
    root, labelled = resolve_dataset(cfg.data.train, "train", cfg.data.cache_dir)
    if transform is None:
        transform = MultiCropTransform(list(views), cfg.data.mean, cfg.data.std)
    return ImageFolderDataset(
        root,
        labelled=labelled,
        transform=transform,
        cache=cfg.data.cache,
        max_images=cfg.data.max_images,
        subset_seed=cfg.train.seed,
        seed=cfg.train.seed,
        config_key="data.train",
        on_bad_image=cfg.data.on_bad_image,
    )


def build_pretrain_data(
    cfg: PretrainConfig,
    views: Sequence[CropSpec],
    transform: ViewTransform | None,
    collate_fn: Callable[[Sequence[dict[str, Any]]], ViewBatch],
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    dataset: Dataset[Any] | None = None,
) -> PretrainData:
    """The pretraining set of ``cfg`` with a method's views and collate function, split across processes: an image
    folder or named dataset, or WebDataset shards (a folder of shards or a brace pattern); or, given ``dataset``, a
    user's own map-style dataset of images (``data.train`` is then not read)."""
    repeats = cfg.data.repeated_augmentation
    transform = transform or MultiCropTransform(list(views), cfg.data.mean, cfg.data.std)
    samples: Any
    if dataset is not None:
        samples = UserDataset(dataset, transform, seed=cfg.train.seed)
    elif is_shard_spec(cfg.data.train):
        if repeats > 1:
            raise VitsslError(
                "data.repeated_augmentation > 1 needs a folder of images; WebDataset shards are read as a stream "
                "(set data.repeated_augmentation=1 or train on the image folder)"
            )
        samples = build_shard_dataset(
            cfg.data.train,
            transform,
            seed=cfg.train.seed,
            rank=rank,
            world_size=world_size,
            batch_size=cfg.data.batch_size,
            on_bad_image=cfg.data.on_bad_image,
            on_bad_shard=cfg.data.on_bad_shard,
        )
    else:
        samples = build_pretrain_dataset(cfg, views, transform)
    return PretrainData(
        samples,
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        seed=cfg.train.seed,
        collate_fn=collate_fn,
        rank=rank,
        world_size=world_size,
        pin_memory=pin_memory,
        repeats=repeats,
    )


def eval_transform(cfg: PretrainConfig) -> EvalTransform:
    size = cfg.data.eval_size or cfg.crops.global_size
    return EvalTransform(size, cfg.data.mean, cfg.data.std, resize=cfg.data.eval_resize)


def build_labelled_dataset(
    cfg: PretrainConfig,
    spec: str,
    role: str,
    max_images: int | None,
    config_key: str,
    on_bad_image: str | None = None,
) -> ImageFolderDataset:
    """A labelled evaluation set (k-NN memory or queries) with the deterministic evaluation transform.

    ``on_bad_image`` ("skip" or "error") defaults to the run's ``data.on_bad_image``; an evaluation command
    passes its own (``--strict``)."""
    root, labelled = resolve_dataset(spec, role, cfg.data.cache_dir)
    if not labelled:
        from vitssl.errors import VitsslError

        raise VitsslError(
            f"{config_key}={spec} has no class sub-folders, but evaluation needs labels; point it "
            "at a folder laid out as root/<class>/<images>"
        )
    return ImageFolderDataset(
        root,
        labelled=True,
        transform=eval_transform(cfg),
        cache=cfg.data.cache,
        max_images=max_images,
        subset_seed=cfg.train.seed,
        config_key=config_key,
        on_bad_image=on_bad_image or cfg.data.on_bad_image,
    )


def knn_memory_spec(cfg: PretrainConfig) -> str | None:
    """The labelled memory set: ``data.knn_train``, else ``data.train`` when it is labelled."""
    if cfg.data.knn_train:
        return cfg.data.knn_train
    if is_shard_spec(cfg.data.train):
        return None  # shards are read in a stream; name a labelled folder in data.knn_train for the online k-NN
    _, labelled = resolve_dataset(cfg.data.train, "train", cfg.data.cache_dir)
    return cfg.data.train if labelled else None
