"""Datasets, views and loaders for self-supervised pretraining.

Every random choice (subsets, shuffles, crops, augmentations) derives from (seed, epoch, sample index), so the
data a run sees does not depend on the number of loader workers or processes, and a resumed run sees the
same views as an uninterrupted one.
"""

from vitssl.config.normalisation import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD
from vitssl.data.images import (
    IMAGE_EXTENSIONS,
    UnreadableImageError,
    UnreadableImageWarning,
    is_image_file,
    load_rgb,
)
from vitssl.data.loading.loader import build_loader, collate_views, set_loader_epoch
from vitssl.data.loading.sampler import EpochSampler, samples_per_rank
from vitssl.data.seeding import derive_seed, sample_generator
from vitssl.data.sources.folders import ImageFolderDataset, ViewTransform
from vitssl.data.sources.named import NAMED_DATASETS, ensure_cifar10_folders, resolve_dataset
from vitssl.data.sources.synthetic import class_names, ensure_synthetic, mask_path
from vitssl.data.views.multicrop import (
    CropSpec,
    EvalTransform,
    MultiCropTransform,
    dino_crops,
)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "NAMED_DATASETS",
    "CropSpec",
    "EpochSampler",
    "EvalTransform",
    "ImageFolderDataset",
    "MultiCropTransform",
    "UnreadableImageError",
    "UnreadableImageWarning",
    "ViewTransform",
    "build_loader",
    "class_names",
    "collate_views",
    "derive_seed",
    "dino_crops",
    "ensure_cifar10_folders",
    "ensure_synthetic",
    "is_image_file",
    "load_rgb",
    "mask_path",
    "resolve_dataset",
    "sample_generator",
    "samples_per_rank",
    "set_loader_epoch",
]
