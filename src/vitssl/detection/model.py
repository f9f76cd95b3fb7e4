"""Object detection on a ViT or Swin backbone: a feature pyramid for torchvision's detectors.

ViT (ViTDet, Li et al. 2022, arXiv 2203.16527, section 3 "simple feature pyramid"): only the last feature map
(stride = the patch size) is used. Two 2x2 stride-2 deconvolutions build stride patch/4, one builds patch/2, the
map itself is patch, a 2x2 max-pool gives 2 x patch (for patch 16: strides 4, 8, 16, 32); every level then goes
through a 1x1 and a 3x3 convolution, each followed by a LayerNorm. A further max-pooled level on top plays the role
of FPN's P6 (Lin et al. 2017, arXiv 1612.03144) for the region proposals.

Swin (Liu et al. 2021, arXiv 2103.14030): its stage outputs (strides patch, 2 patch, 4 patch, ...) go through
torchvision's FPN (Lin et al. 2017) with the same max-pooled extra level.

Either adapter returns an ``OrderedDict`` of maps with ``out_channels`` channels, which is what torchvision's
Faster R-CNN, RetinaNet and FCOS expect; inputs of any size are padded (bottom/right) to a multiple of
``size_divisible``, and the ViT's position embeddings are interpolated to the grid by timm.
"""

from __future__ import annotations

import abc
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import Tensor, nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from vitssl.errors import VitsslError
from vitssl.models.backbones import Backbone

DETECTORS = ("faster_rcnn", "retinanet", "fcos")


class DetectionBackbone(nn.Module, metaclass=abc.ABCMeta):
    """Base of the adapters: padding, freezing, and the pyramid's geometry.

    Attributes:
        body: The wrapped :class:`Backbone`.
        out_channels: Channels of every output map (torchvision's detectors read this attribute).
        strides: Stride in input pixels of each output map, in order.
        size_divisible: Inputs are padded to a multiple of this, so that every level's stride is exact.
    """

    def __init__(self, body: Backbone, out_channels: int) -> None:
        super().__init__()
        if out_channels < 8:
            raise VitsslError(f"the pyramid needs at least 8 channels, got {out_channels}; raise --fpn-channels")
        self.body = body
        self.out_channels = out_channels
        self.frozen = False
        self.strides: list[int] = []
        self.size_divisible = 1

    def freeze(self) -> DetectionBackbone:
        """Keep the pretrained body fixed (eval mode, no gradients); only the pyramid and the heads learn."""
        self.frozen = True
        for p in self.body.parameters():
            p.requires_grad_(False)
        self.body.eval()
        return self

    def unfreeze(self) -> DetectionBackbone:
        """Fine-tune the body too (see ``vitssl.detection.train`` for its layer-wise learning-rate decay)."""
        self.frozen = False
        for p in self.body.parameters():
            p.requires_grad_(True)
        return self

    def train(self, mode: bool = True) -> DetectionBackbone:
        super().train(mode)
        if self.frozen:  # a frozen body keeps its eval behaviour (no drop-path) while the heads train
            self.body.eval()
        return self

    def pad(self, images: Tensor) -> Tensor:
        """Zero-pad (B, 3, H, W) at the bottom and right up to multiples of ``size_divisible``."""
        h, w = images.shape[-2:]
        m = self.size_divisible
        return F.pad(images, (0, (-w) % m, 0, (-h) % m))

    @abc.abstractmethod
    def body_maps(self, images: Tensor) -> list[Tensor]:
        """The backbone's feature maps for padded images, finest first."""

    @abc.abstractmethod
    def neck(self, maps: list[Tensor]) -> OrderedDict[str, Tensor]:
        """The pyramid the detector heads read, keyed '0', '1', ... (finest first) plus 'pool' where used."""

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        images = self.pad(images)
        # A frozen body needs no activations kept for backward: much less memory and time.
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            maps = self.body_maps(images)
        return self.neck(maps)


def _conv_ln(in_ch: int, out_ch: int) -> nn.Sequential:
    """ViTDet's per-level output block: 1x1 conv + LN, 3x3 conv + LN (bias-free convs, as norms follow)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 1, bias=False),
        LayerNorm2d(out_ch),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        LayerNorm2d(out_ch),
    )


def _rescale(dim: int, scale: float) -> tuple[nn.Module, int]:
    """The ViTDet branch that turns the stride-patch map into scale x its resolution, and its width."""
    if scale == 4.0:
        half = dim // 2
        up = nn.Sequential(
            nn.ConvTranspose2d(dim, half, 2, stride=2), LayerNorm2d(half), nn.GELU(),
            nn.ConvTranspose2d(half, dim // 4, 2, stride=2),
        )  # fmt: skip
        return up, dim // 4
    if scale == 2.0:
        return nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), dim // 2
    if scale == 1.0:
        return nn.Identity(), dim
    return nn.MaxPool2d(2, stride=2), dim


class ViTSimplePyramid(DetectionBackbone):
    """ViTDet's simple feature pyramid over a plain ViT (see the module docstring).

    Args:
        body: A ViT :class:`Backbone` (built with dynamic image size).
        out_channels: Width of every pyramid level (256 in the papers).
        scales: Resolutions relative to the patch grid.
        min_stride: Levels finer than this many pixels are left out: with the 4 px patches of small-image
            backbones the 4x level would have stride 1, costing four times the stride-2 level for objects that
            are never that small (with patch 16 nothing is left out).
    """

    def __init__(
        self,
        body: Backbone,
        out_channels: int = 256,
        scales: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5),
        min_stride: int = 2,
    ) -> None:
        super().__init__(body, out_channels)
        if body.is_swin:
            raise VitsslError("ViTSimplePyramid needs a ViT backbone; use SwinFPN (or build_pyramid) for Swin")
        patch = body.patch_size
        self.scales = [s for s in scales if patch / s >= min_stride and float(patch / s).is_integer()]
        branches, outputs = [], []
        for scale in self.scales:
            branch, width = _rescale(body.embed_dim, scale)
            branches.append(branch)
            outputs.append(_conv_ln(width, out_channels))
        self.branches = nn.ModuleList(branches)
        self.outputs = nn.ModuleList(outputs)
        self.strides = [int(patch / s) for s in self.scales]
        self.strides.append(2 * self.strides[-1])  # the extra max-pooled level
        self.size_divisible = self.strides[-1]

    def body_maps(self, images: Tensor) -> list[Tensor]:
        feats = self.body(images)
        rows, cols = feats.grid
        return [feats.tokens.transpose(1, 2).reshape(len(images), -1, rows, cols)]

    def neck(self, maps: list[Tensor]) -> OrderedDict[str, Tensor]:
        out: OrderedDict[str, Tensor] = OrderedDict()
        for i, (branch, output) in enumerate(zip(self.branches, self.outputs, strict=True)):
            out[str(i)] = output(branch(maps[0]))
        out["pool"] = F.max_pool2d(out[str(len(self.outputs) - 1)], kernel_size=1, stride=2)
        return out


class SwinFPN(DetectionBackbone):
    """A Swin's stage outputs through torchvision's FPN (Lin et al. 2017), plus a max-pooled top level."""

    def __init__(self, body: Backbone, out_channels: int = 256) -> None:
        super().__init__(body, out_channels)
        if not body.is_swin:
            raise VitsslError("SwinFPN needs a Swin backbone; use ViTSimplePyramid (or build_pyramid) for a ViT")
        info = body.model.feature_info
        self.fpn = FeaturePyramidNetwork(
            [int(i["num_chs"]) for i in info], out_channels, extra_blocks=LastLevelMaxPool()
        )
        self.strides = [body.patch_size * 2**i for i in range(len(info))]
        self.strides.append(2 * self.strides[-1])
        self.size_divisible = self.strides[-1]

    def body_maps(self, images: Tensor) -> list[Tensor]:
        # timm's public API for stage outputs (NCHW, before the final norm); windows are padded inside timm
        return list(self.body.model.forward_intermediates(images, intermediates_only=True))

    def neck(self, maps: list[Tensor]) -> OrderedDict[str, Tensor]:
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))


def build_pyramid(body: Backbone, out_channels: int = 256) -> DetectionBackbone:
    """The adapter that suits the backbone: ViTDet's simple pyramid for a ViT, an FPN for a Swin."""
    return SwinFPN(body, out_channels) if body.is_swin else ViTSimplePyramid(body, out_channels)


def _anchors(strides: list[int], detector: str) -> AnchorGenerator:
    """Anchor sizes tied to each level's stride, so that small-image backbones (patch 4) get small anchors.

    Faster R-CNN: 8 x stride (FPN's 32..512 px for strides 4..64), three aspect ratios. RetinaNet: 4 x stride
    times 2^(0, 1/3, 2/3) (Lin et al. 2017, arXiv 1708.02002). FCOS: one point per location, size = stride.
    """
    sizes: tuple[tuple[float, ...], ...]
    ratios: tuple[tuple[float, ...], ...]
    if detector == "faster_rcnn":
        sizes = tuple((8 * s,) for s in strides)
        ratios = ((0.5, 1.0, 2.0),) * len(strides)
    elif detector == "retinanet":
        sizes = tuple(tuple(4 * s * 2 ** (k / 3) for k in range(3)) for s in strides)
        ratios = ((0.5, 1.0, 2.0),) * len(strides)
    else:
        sizes = tuple((s,) for s in strides)
        ratios = ((1.0,),) * len(strides)
    return AnchorGenerator(sizes, ratios)


def _proposal_budget(image_size: int) -> dict[str, int]:
    """torchvision's proposal and RoI-sampling counts are tuned for 800 px images with dozens of objects; on small
    images they only cost time (RoI-align's backward dominates a CPU step), so they shrink below 400 px."""
    if image_size >= 400:
        return {}
    return {
        "rpn_pre_nms_top_n_train": 600,
        "rpn_post_nms_top_n_train": 300,
        "rpn_pre_nms_top_n_test": 300,
        "rpn_post_nms_top_n_test": 300,
        "box_batch_size_per_image": 128,
    }


def build_detector(
    pyramid: DetectionBackbone,
    detector: str,
    num_classes: int,
    image_size: int,
    mean: list[float],
    std: list[float],
) -> nn.Module:
    """A torchvision detector on ``pyramid``.

    Args:
        pyramid: The adapter (see :func:`build_pyramid`).
        detector: ``faster_rcnn``, ``retinanet`` or ``fcos``.
        num_classes: Object classes, without background; labels run 1..num_classes (0 is background).
        image_size: Images are resized so their short side is this (long side at most 5/3 of it).
        mean: Per-channel normalisation mean (the run's), applied inside the detector.
        std: Per-channel normalisation std.
    """
    if detector not in DETECTORS:
        raise VitsslError(f"unknown detector '{detector}'; use one of {', '.join(DETECTORS)}")
    if detector == "fcos" and pyramid.out_channels % 32:
        raise VitsslError(
            f"FCOS's heads use 32 norm groups: --fpn-channels must be a multiple of 32, not {pyramid.out_channels}"
        )
    if num_classes < 1 or image_size < pyramid.size_divisible:
        raise VitsslError(
            f"need at least one class and an image size of at least {pyramid.size_divisible} px "
            f"(got {num_classes} classes, {image_size} px); raise --image-size"
        )
    common = {
        "min_size": image_size,
        "max_size": math.ceil(image_size * 5 / 3),
        "image_mean": list(mean),
        "image_std": list(std),
        "size_divisible": pyramid.size_divisible,
    }
    anchors = _anchors(pyramid.strides, detector)
    c, n = pyramid.out_channels, num_classes + 1  # torchvision indexes classes by label: keep 0 for background
    if detector == "faster_rcnn":
        names = [str(i) for i in range(len(pyramid.strides) - 1)]  # RoIs pool from every level but the extra one
        rep = min(1024, 4 * c)
        return FasterRCNN(
            pyramid,
            **_proposal_budget(image_size),
            rpn_anchor_generator=anchors,
            rpn_head=RPNHead(c, anchors.num_anchors_per_location()[0]),
            box_roi_pool=MultiScaleRoIAlign(names, output_size=7, sampling_ratio=2),
            box_head=TwoMLPHead(c * 7 * 7, rep),
            box_predictor=FastRCNNPredictor(rep, n),
            **common,
        )
    if detector == "retinanet":
        head = RetinaNetHead(c, anchors.num_anchors_per_location()[0], n)
        return RetinaNet(pyramid, n, anchor_generator=anchors, head=head, **common)
    # a lower score threshold than torchvision's 0.2, as AP integrates over every confidence
    return FCOS(pyramid, n, anchor_generator=anchors, head=FCOSHead(c, 1, n), score_thresh=0.05, **common)
