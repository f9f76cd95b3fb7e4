"""Per-channel normalisation statistics of [0, 1] RGB pixels: the one place that defines them."""

from __future__ import annotations

# torchvision's ImageNet statistics, which timm's and the authors' pretrained weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The CIFAR-10 training set's own statistics.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
