"""The typed configuration schema: one dataclass per section, every field with its help text.

Every field carries its help text in ``metadata["help"]``; ``vitssl pretrain --help-config`` prints them, so the
dataclasses below are also the tuning guide.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vitssl.config.normalisation import IMAGENET_MEAN, IMAGENET_STD
from vitssl.config.sections import default_sections


def field_with_help(default: Any, help: str) -> Any:
    """A dataclass field with a help text (mutable defaults are copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


_f = field_with_help  # short name for the many field declarations below


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
        "'memory' keeps every image in shared memory once it has been decoded (on its first read, so training "
        "starts at once; loader workers share it); 'none' decodes on every read; 'auto' picks memory for small "
        "data sets (and none when /dev/shm is too small).",
    )
    on_bad_image: Literal["skip", "error"] = _f(
        "skip",
        "An unreadable or empty image file: 'skip' lets the next readable image stand in for it, counts it and "
        "names the first few in one line at the end of the run (logged as skipped_images); 'error' stops the "
        "run with a one-line error naming the file.",
    )
    on_bad_shard: Literal["skip", "error"] = _f(
        "error",
        "A torn or unreadable WebDataset shard: 'error' stops the run with a one-line error naming it; 'skip' "
        "keeps training, readable samples standing in for the shard's missing ones (so every process keeps its "
        "number of batches), and counts and names the shard (logged as bad_shards).",
    )
    mean: list[float] = _f(list(IMAGENET_MEAN), "Per-channel normalisation mean (RGB, 0..1).")
    std: list[float] = _f(list(IMAGENET_STD), "Per-channel normalisation std (RGB, 0..1).")
    repeated_augmentation: int = _f(
        1,
        "Repeated augmentation (DeiT's RASampler, used by SiT's authors with 3): each image of an epoch's "
        "permutation appears this many times, each copy with its own views, spread over the global batch; the "
        "epoch keeps its length. 1 = off.",
    )
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
        "Backbone: a preset (vit_mini, vit_tiny, vit_small, vit_base; swin_tiny, swin_small, swin_base; "
        "swin_mini_32 and swin_tiny_32 for 32 px images) or any timm ViT or Swin name. Swin needs method esvit or "
        "dino.",
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
    attention: Literal["auto", "fused", "explicit"] = _f(
        "auto",
        "Attention kernel: 'fused' (torch's scaled_dot_product_attention), 'explicit' (softmax(q k^T) v as "
        "matrix products) or 'auto' (fused; on a 2-core CPU explicit measured 6 % faster for 7 % more memory at "
        "ViT-Tiny's token counts: docs/benchmarks.md). Same result up to float rounding.",
    )
    grad_checkpointing: bool = _f(
        False,
        "Activation checkpointing of the student's blocks: recompute each block's activations in the backward "
        "pass instead of keeping them. Less memory (larger batches fit), one more forward's worth of time.",
    )
    init_from: str | None = _f(
        None,
        "Start from these backbone weights instead of a random initialisation: a safetensors / timm weights file, "
        "a folder exported by `vitssl export` (timm or Hugging Face), or another run's folder or checkpoint. "
        "Names and shapes are checked; see model.init_strict.",
    )
    init_strict: bool = _f(
        True,
        "With model.init_from: refuse unless every backbone tensor is found with its shape (true), or load what "
        "matches and print what was skipped (false).",
    )


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
    budget_minutes: float | None = _f(
        None,
        "Wall-clock budget of the training in minutes: after a few steps the run measures its pace and shortens "
        "optim.epochs to what fits, so that the schedules end in time. The final k-NN is not counted.",
    )
    compile: bool = _f(
        False,
        "torch.compile the backbones (student and teacher) before training. Pays a one-off compilation (tens of "
        "seconds to minutes) for faster steps; worth it for long runs, on GPU above all. See docs/benchmarks.md.",
    )
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
    nonfinite_check: Literal["auto", "sync", "device"] = _f(
        "auto",
        "Where a non-finite loss is caught. 'sync': the host reads the loss every step and skips the update (free "
        "on CPU). 'device': the decision stays on the device (fused AdamW skips through its found_inf flag, the "
        "teacher and centres keep their values), so nothing is read between logged steps and a GPU's queue never "
        "drains; the loss, the skip count and the max_nonfinite stop are read on logged steps. 'auto': 'device' "
        "on CUDA, 'sync' elsewhere.",
    )
    keep_checkpoints: int = _f(
        2,
        "Checkpoints kept in the run folder: last.pt and the previous keep_checkpoints - 1 (last-<step>.pt). A torn "
        "or corrupt newest checkpoint is reported and the run resumes from the newest good one.",
    )
    progress: bool = _f(True, "Show a progress bar.")
    loggers: list[Literal["tensorboard", "csv", "wandb", "mlflow"]] = _f(
        ["tensorboard"],
        "Where metrics go besides metrics.jsonl (always written): 'tensorboard' (RUN/tensorboard), 'csv' "
        "(RUN/metrics.csv), 'wandb' (Weights & Biases; pip install \"vitssl[wandb]\"; WANDB_MODE=offline works "
        "without a network), 'mlflow' (pip install \"vitssl[mlflow]\"; MLFLOW_TRACKING_URI, else a file store in "
        "RUN/mlruns). A resumed run continues the same W&B / MLflow run (its id is kept in the run folder).",
    )
    wandb_project: str = _f("vitssl", "The Weights & Biases project of train.loggers=[...,wandb].")


@dataclass
class PretrainConfig:
    """The whole recipe of a pretraining run.

    The generic sections are fields; each method's own section (``dino``, ``esvit``, ``sit``, or a section a new
    method registers with :func:`vitssl.config.register_section`) lives in ``sections`` and reads as an
    attribute: ``cfg.dino.out_dim``. Every registered section is present with its defaults, so a config file
    written by one method lists the keys of all of them.
    """

    name: str = _f("dino", "Name of the run (used in the run folder's path).")
    method: str = _f(
        "dino",
        "Self-supervised method: dino (self-distillation), esvit (DINO plus the region-matching loss; any ViT "
        "or Swin backbone), sit (corrupt, reconstruct, rotate, contrast), or any method registered by a plugin.",
    )
    data: DataConfig = field(default_factory=DataConfig)
    crops: CropsConfig = field(default_factory=CropsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sections: dict[str, Any] = field(default_factory=default_sections, metadata={"help": "", "sections": True})

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: method sections read like fields (cfg.dino.out_dim).
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__} has no section {name!r}")

    @property
    def run_dir(self) -> Path:
        return Path(self.train.out_dir.format(name=self.name)).expanduser()


def describe(cls: type = PretrainConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, help) rows for every field (method sections included), for ``--help-config``."""
    rows: list[tuple[str, str, str]] = []
    instance = cls()
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name)
        if f.metadata.get("sections"):
            for name, section in value.items():
                rows.extend(describe(type(section), f"{prefix}{name}."))
        elif dataclasses.is_dataclass(value):
            rows.extend(describe(type(value), f"{prefix}{f.name}."))
        else:
            rows.append((prefix + f.name, repr(value), f.metadata.get("help", "")))
    return rows
