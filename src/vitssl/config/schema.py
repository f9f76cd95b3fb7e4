"""The typed configuration schema: one dataclass per section, every field with its help text.

Every field carries its help text in ``metadata["help"]``; ``vitssl pretrain --help-config`` prints them, so the
dataclasses below are also the tuning guide.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _f(default: Any, help: str) -> Any:
    """A dataclass field with a help text (mutable defaults are copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    train: str = _f(
        "synthetic",
        "Pretraining images: a folder (any nesting; labels ignored) or a named dataset: "
        "'synthetic' (built in, offline), 'cifar10' (downloaded into data.cache_dir).",
    )
    val: str | None = _f(
        None,
        "Labelled folder (root/<class>/<images>) or named dataset for the online k-NN "
        "queries; for named datasets the test split is used. Leave empty to skip online k-NN.",
    )
    knn_train: str | None = _f(
        None,
        "Labelled memory set for the online k-NN; defaults to data.train when that "
        "is labelled (class subfolders or a named dataset).",
    )
    cache_dir: str = _f("~/.cache/vitssl", "Where named datasets are downloaded or generated.")
    batch_size: int = _f(
        64,
        "Images per process per micro-batch. The effective batch is "
        "batch_size x optim.accumulate x processes; the lr is scaled with it.",
    )
    num_workers: int = _f(
        2,
        "Data loader worker processes per training process. 0 loads in the main "
        "process (slower, but easiest to debug). Results do not depend on it.",
    )
    max_images: int | None = _f(
        None,
        "Use a fixed subset of this many training images (stratified when labelled). Handy for quick experiments.",
    )
    cache: Literal["auto", "memory", "none"] = _f(
        "auto",
        "'memory' decodes every image once and keeps it in "
        "RAM (fast for small data sets); 'none' decodes on the fly; "
        "'auto' picks memory for small data sets.",
    )
    mean: list[float] = _f(list(IMAGENET_MEAN), "Per-channel normalisation mean (RGB, 0..1).")
    std: list[float] = _f(list(IMAGENET_STD), "Per-channel normalisation std (RGB, 0..1).")
    eval_size: int | None = _f(None, "Image side for k-NN evaluation (center crop). Defaults to crops.global_size.")
    eval_resize: int | None = _f(
        None,
        "Resize the shorter side to this before the center crop during "
        "evaluation (ImageNet: 256 for 224 crops). Defaults to eval_size.",
    )


@dataclass
class CropsConfig:
    global_size: int = _f(224, "Side of the two global crops in pixels.")
    global_scale: list[float] = _f(
        [0.4, 1.0],
        "Area range of global crops relative to the image. With no local crops, (0.14, 1.0) is the paper's choice.",
    )
    local_count: int = _f(
        8,
        "Number of small local crops per image (multi-crop). 0 disables multi-crop. More "
        "crops give more learning signal per image at extra compute (they are small).",
    )
    local_size: int = _f(96, "Side of the local crops in pixels (ImageNet: 96 for 224 global crops).")
    local_scale: list[float] = _f([0.05, 0.4], "Area range of local crops relative to the image.")
    jitter_p: float = _f(0.8, "Probability of colour jitter on each crop.")
    brightness: float = _f(0.4, "Colour-jitter brightness strength (factor drawn from [1 - x, 1 + x]).")
    contrast: float = _f(0.4, "Colour-jitter contrast strength.")
    saturation: float = _f(0.2, "Colour-jitter saturation strength.")
    hue: float = _f(
        0.1,
        "Colour-jitter hue shift, in turns of the colour wheel (at most 0.5). Raise it when "
        "colour is a shortcut that says nothing about the content (e.g. randomly coloured shapes).",
    )
    grayscale_p: float = _f(0.2, "Probability of converting a crop to grayscale.")
    blur_radius: list[float] = _f(
        [0.1, 2.0],
        "Range of the Gaussian blur radius in pixels (DINO's values are "
        "for 224 px crops; scale them down for small images, e.g. [0.1, 0.5] at 32 px).",
    )


@dataclass
class ModelConfig:
    backbone: str = _f(
        "vit_small",
        "Backbone: a preset (vit_tiny, vit_small, vit_base; swin_tiny, swin_small, swin_base; swin_mini_32 and "
        "swin_tiny_32 for 32 px images) or any timm ViT or Swin name. Swin needs method esvit or dino.",
    )
    patch_size: int | None = _f(
        None,
        "Patch size override (e.g. 4 for 32 px images). Smaller patches give "
        "more tokens: better features, quadratically more attention compute.",
    )
    img_size: int | None = _f(
        None,
        "Native image size of the position embeddings (other crop sizes are "
        "interpolated). Defaults to crops.global_size.",
    )
    depth: int | None = _f(None, "Number of transformer blocks override for ViT (fewer blocks: faster, weaker).")
    window_size: int | None = _f(
        None,
        "Swin attention window override (7 or 14 at 224 px). Larger windows see more context per block at "
        "quadratic cost; crops whose feature map is smaller than the window get padded windows.",
    )
    drop_path: float = _f(0.1, "Stochastic depth rate of the student (the teacher always uses 0).")


@dataclass
class DINOConfig:
    out_dim: int = _f(
        65536,
        "Head output dimension K (number of prototypes). Large K helps on ImageNet; "
        "small data sets are fine with a few thousand.",
    )
    hidden_dim: int = _f(2048, "Hidden width of the head's MLP.")
    bottleneck_dim: int = _f(256, "Bottleneck width before the weight-normalised last layer.")
    use_bn_in_head: bool = _f(False, "BatchNorm in the head MLP (off in the paper's ViT recipe).")
    norm_last_layer: bool = _f(
        True,
        "Freeze the norm of the last layer's weights (cosine logits). Stabler; "
        "set false for better results at the risk of instability.",
    )
    student_temp: float = _f(0.1, "Student softmax temperature.")
    teacher_temp: float = _f(0.07, "Final teacher temperature. Start at 0.04; above ~0.07 training is unstable.")
    warmup_teacher_temp: float = _f(0.04, "Initial teacher temperature; lower it if the loss stays flat early.")
    warmup_teacher_temp_epochs: float = _f(30, "Epochs of linear warm-up from warmup_teacher_temp to teacher_temp.")
    center_momentum: float = _f(
        0.9,
        "Momentum of the teacher-output centre (centring prevents collapse to one "
        "dimension; sharpening prevents collapse to uniform).",
    )
    momentum_teacher: float = _f(
        0.996,
        "Initial EMA momentum of the teacher, raised to 1 by a cosine schedule. "
        "Use a higher value (0.9995) with small batches and a lower one (0.99) for "
        "very short runs.",
    )
    freeze_last_layer: float = _f(
        1, "Epochs during which the head's last layer gets no update; helps the start of training."
    )


@dataclass
class EsViTConfig:
    view_weight: float = _f(0.5, "Weight of the view-level (DINO) term of each crop pair.")
    region_weight: float = _f(
        0.5,
        "Weight of the region-level term: each student region token learns from the teacher token of the "
        "other crop with the most similar backbone feature. 0 turns EsViT into DINO on the same backbone.",
    )
    region_loss_start: float = _f(
        0,
        "Epoch at which the region term switches on (several released EsViT models trained view-only for the "
        "first two thirds of the run). Before it, the region head still follows the EMA but gets no gradient.",
    )


@dataclass
class SiTConfig:
    variant: Literal["original", "masked"] = _f(
        "original",
        "'original': SiT 2021, rotation + contrastive (NT-Xent) + reconstruction of all pixels, combined by "
        "learned uncertainties; 'masked': the 2022 revision, masked reconstruction (L1 on corrupted pixels only) "
        "+ symmetric InfoNCE against an EMA teacher on clean views, no rotation. Views use crops.global_size, "
        "crops.global_scale and the crops.* colour-jitter settings; local crops and blur are not used.",
    )
    rotations: list[int] = _f(
        [0, 1, 2, 3],
        "Allowed rotations k (view turned by k x 90 degrees, k is the label). [0] disables the rotation task "
        "(the masked variant always uses [0]).",
    )
    grayscale_p: float = _f(1.0, "Probability of the grayscale-patch corruption (one rectangle made grey).")
    grayscale_side: list[float] = _f(
        [0.05, 1.0], "Side range of the grey rectangle as fractions of the view side (SiT: 5% up to the border)."
    )
    blur_p: float = _f(1.0, "Probability of the blur-patch corruption (one rectangle Gaussian-blurred).")
    blur_side: list[float] = _f([0.05, 1.0], "Side range of the blurred rectangle (fractions of the view side).")
    blur_kernel: list[int] = _f([3, 15], "Range of the odd blur kernel size in pixels (scale down for small images).")
    blur_sigma: list[float] = _f([0.1, 5.1], "Range of the blur sigma in pixels.")
    drop_p: float = _f(1.0, "Probability of random drop (rectangles filled with noise or the mean colour).")
    drop_side: list[float] = _f([0.05, 0.25], "Side range of each dropped rectangle (fractions of the view side).")
    drop_area: list[float] = _f(
        [0.0, 0.3],
        "Range of the dropped fraction of the view, drawn uniformly; rectangles are added until it is reached "
        "(the masked variant: [0.5, 0.5], i.e. at least half of the pixels).",
    )
    drop_fill: Literal["noise", "zeros"] = _f(
        "noise", "'noise': Gaussian noise (N(0, 1) after normalisation); 'zeros': 0 after normalisation."
    )
    replace_p: float = _f(
        1.0, "Probability of random replace (rectangles copied from another image of the batch, at collation)."
    )
    replace_side: list[float] = _f([0.05, 0.25], "Side range of each replaced rectangle (fractions of the view side).")
    replace_area: list[float] = _f([0.0, 0.3], "Range of the replaced fraction of the view, drawn uniformly.")
    replace_excludes_drop: bool = _f(
        False,
        "When a random replace fires, skip the random drop (the masked variant's either/or: zeroed rectangles, "
        "or with probability replace_p pasted ones).",
    )
    distort_p: float = _f(0.0, "Probability of whole-view colour distortion (a corruption: the target stays clean).")
    distort_strength: float = _f(0.4, "Strength s of that distortion: brightness/contrast/saturation in [1-s, 1+s].")
    proj_dim: int = _f(512, "Output size of the contrastive projection head.")
    proj_hidden_dim: int = _f(0, "Hidden width of the contrastive head; 0 = one linear layer (the paper), else an MLP.")
    rec_hidden_dim: int = _f(
        0, "Hidden width of the reconstruction head's MLP before the linear map to pixels; 0 = linear only."
    )
    weighting: Literal["uncertainty", "fixed"] = _f(
        "uncertainty",
        "How the original variant combines its losses: 'uncertainty' = sum exp(-a_t s_t) L_t + 0.5 s_t with a "
        "learned s_t per task (the paper); 'fixed' = rot_weight L_rot + con_weight L_con + rec_weight L_rec.",
    )
    uncertainty_init: float = _f(1.0, "Initial value of each learned uncertainty s_t.")
    rot_weight: float = _f(1.0, "Weight of the rotation loss in fixed weighting.")
    con_weight: float = _f(1.0, "Weight of the contrastive loss in fixed weighting and in the masked variant.")
    rec_weight: float = _f(
        1.0,
        "Weight of the reconstruction loss in fixed weighting; lambda of the masked variant (about 5 on small data).",
    )
    temperature: float = _f(0.5, "NT-Xent temperature of the original variant.")
    masked_temperature: float = _f(0.2, "InfoNCE temperature of the masked variant.")
    momentum_teacher: float = _f(
        0.996, "Masked variant: initial EMA momentum of the teacher, raised to 1 by a cosine schedule."
    )
    knn_feature: Literal["contrastive", "rotation", "patch_mean", "tokens_mean"] = _f(
        "contrastive",
        "Feature that k-NN (and eval_backbone().pooled) uses: the contrastive token, the rotation token, the mean "
        "of the patch tokens, or the mean of all final tokens. Masked variant: the teacher's. The contrastive "
        "token measured best (reconstruction pulls the patch tokens towards pixels; see docs/sit.md).",
    )
    picture_images: int = _f(8, "Images in each reconstruction picture (clean / corrupted / reconstructed / mask).")


@dataclass
class OptimConfig:
    epochs: float = _f(100, "Length of training in epochs (fractions allowed). All schedules span it.")
    lr: float = _f(5e-4, "Peak learning rate for an effective batch of 256; scaled linearly with the batch.")
    min_lr: float = _f(1e-6, "Learning rate at the end of the cosine schedule.")
    warmup_epochs: float = _f(10, "Epochs of linear learning-rate warm-up from 0.")
    weight_decay: float = _f(
        0.04,
        "Initial weight decay (cosine schedule to weight_decay_end). Biases and 1-D parameters (norms) get none.",
    )
    weight_decay_end: float = _f(0.4, "Final weight decay.")
    betas: list[float] = _f([0.9, 0.999], "AdamW betas.")
    clip_grad: float = _f(
        3.0,
        "Clip each parameter tensor's gradient to this norm (per tensor, as in DINO); 0 disables clipping.",
    )
    accumulate: int = _f(
        1,
        "Micro-batches per optimiser step (gradient accumulation); the centre and the "
        "teacher update once per optimiser step.",
    )


@dataclass
class TrainConfig:
    out_dir: str = _f(
        "runs/{name}",
        "Run folder ({name} is replaced). Re-running the same command resumes from the last checkpoint in it.",
    )
    seed: int = _f(0, "Seed of every random choice (model init, views, order).")
    device: str = _f("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = _f(
        "auto",
        "'auto' = bf16 autocast on CUDA when "
        "supported (else fp16 with a loss scaler), fp32 "
        "on CPU. Losses are always computed in fp32.",
    )
    threads: int | None = _f(None, "torch CPU threads (default: torch's choice).")
    log_every: int = _f(10, "Write metrics every this many optimiser steps.")
    checkpoint_every: int = _f(200, "Save a resumable checkpoint every this many steps (and at the end).")
    knn_every: int = _f(0, "Run the online k-NN every this many steps (0: only at the end) when data.val is set.")
    knn_k: int = _f(20, "k of the online k-NN.")
    knn_max_train: int = _f(5000, "Cap on the k-NN memory set (fixed stratified subset).")
    knn_max_val: int = _f(1000, "Cap on the k-NN query set (fixed stratified subset).")
    picture_every: int = _f(
        0,
        "Write the method's pictures (SiT: clean / corrupted / reconstructed grids) into RUN/pictures every this "
        "many steps, and at the end; 0 = only at the end. Methods without pictures ignore it.",
    )
    max_nonfinite: int = _f(5, "Stop after this many consecutive non-finite losses (each is skipped).")
    progress: bool = _f(True, "Show a progress bar.")


@dataclass
class PretrainConfig:
    name: str = _f("dino", "Name of the run (used in the run folder's path).")
    method: str = _f(
        "dino",
        "Self-supervised method: dino (self-distillation), esvit (DINO plus the region-matching loss; any ViT "
        "or Swin backbone), sit (corrupt, reconstruct, rotate, contrast).",
    )
    data: DataConfig = field(default_factory=DataConfig)
    crops: CropsConfig = field(default_factory=CropsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    dino: DINOConfig = field(default_factory=DINOConfig)
    esvit: EsViTConfig = field(default_factory=EsViTConfig)
    sit: SiTConfig = field(default_factory=SiTConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.train.out_dir.format(name=self.name)).expanduser()


def describe(cls: type = PretrainConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, help) rows for every field, for ``--help-config``."""
    rows: list[tuple[str, str, str]] = []
    instance = cls()
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe(type(value), f"{prefix}{f.name}."))
        else:
            rows.append((prefix + f.name, repr(value), f.metadata.get("help", "")))
    return rows
