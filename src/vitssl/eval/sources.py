"""Any weights as an evaluation backbone: a vitssl run, an export folder, a timm model, a transformers ViT, or the
authors' own release files (DINO, SiT, EsViT), named by one SOURCE string.

Every kind gives ``(config, backbone)``: a frozen vitssl :class:`~vitssl.models.backbones.Backbone` in eval mode
whose ``pooled`` is the feature the source's authors evaluate ([CLS] after the final norm for a ViT, which for
DINO is exactly what their ``VisionTransformer`` returns), and a :class:`~vitssl.config.PretrainConfig` whose data
section carries the evaluation transform: the run's own for a run or a native export, else the source's
(timm's ``pretrained_cfg``) or ImageNet's mean and std at 224 px (resize 256, centre crop: DINO's protocol),
overridable with ``mean`` / ``std`` / ``image_size``.

SOURCE kinds (see ``docs/export.md``, "Weights in and out"):

* a run folder or checkpoint written by ``vitssl pretrain``;
* a folder written by ``vitssl export`` (``safetensors``: ``config.yaml``; ``timm`` / ``hf``: ``config.json``
  with ``architecture``), or any timm hub / TimmWrapper folder;
* ``timm:NAME.TAG`` (``timm.create_model(pretrained=True)``) or ``timm:NAME.TAG@FILE`` (the same with a local
  weights file, through timm's ``pretrained_cfg_overlay``: offline);
* ``hf:REPO_OR_FOLDER``: a transformers ``ViTModel`` (e.g. ``facebook/dino-vits16``) or TimmWrapper folder; a
  repository name is downloaded with ``huggingface_hub``, a local folder is read offline;
* a release file (``.pth``/``.pt``/``.bin``/``.safetensors``): DINO's plain state dicts or training
  checkpoints, SiT's, EsViT's (:mod:`vitssl.eval.releases`).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vitssl.config import IMAGENET_MEAN, IMAGENET_STD, PretrainConfig
from vitssl.errors import VitsslError
from vitssl.models.backbones import Backbone

__all__ = ["DataOverrides", "Source", "load_backbone", "parse_source", "resolve_source", "results_dir"]

DEFAULT_SIZE = 224
RESIZE_RATIO = 256 / 224  # DINO's evaluation: resize the short side to 256, centre crop 224
DINO_TAGS = ("dino",)  # timm's pretrained tags of the DINO authors' weights


@dataclass(frozen=True)
class Source:
    """A parsed SOURCE string.

    Attributes:
        text: As given.
        kind: ``run``, ``export`` (a folder with a config), ``timm``, ``hf`` or ``file`` (a release file).
        path: The local file or folder (for ``timm``: the optional weights file).
        name: The timm model name or Hub repository.
    """

    text: str
    kind: str
    path: Path | None = None
    name: str | None = None


@dataclass(frozen=True)
class DataOverrides:
    """Evaluation-transform settings from the command line (None: the source's own, else ImageNet's at 224)."""

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    image_size: int | None = None


def _is_vitssl_checkpoint(path: Path) -> bool:
    from vitssl.checkpoints import LAST

    if path.is_dir():
        return (path / LAST).is_file()
    return path.name == LAST or re.fullmatch(r"last-\d+\.pt", path.name) is not None


def parse_source(text: str | Path) -> Source:
    """Classify SOURCE without reading any weights (a missing path is a one-line error)."""
    text = str(text)
    if text.startswith("timm:"):
        name, _, file = text[len("timm:") :].partition("@")
        if not name:
            raise VitsslError(f"{text!r} names no timm model; use timm:NAME.TAG, e.g. timm:vit_small_patch16_224.dino")
        return Source(text, "timm", Path(file).expanduser() if file else None, name)
    if text.startswith("hf:"):
        repo = text[len("hf:") :]
        local = Path(repo).expanduser()
        return Source(text, "hf", local if local.is_dir() else None, repo)
    path = Path(text).expanduser()
    if not path.exists():
        raise VitsslError(
            f"{text} does not exist; pass a run folder, a checkpoint, an export folder, a release file, "
            "timm:NAME.TAG or hf:REPO"
        )
    if _is_vitssl_checkpoint(path):
        return Source(text, "run", path)
    if path.is_dir():
        if (path / "config.yaml").is_file() or (path / "config.json").is_file():
            return Source(text, "export", path)
        raise VitsslError(f"{path} holds no last.pt, config.yaml or config.json; pass a run or an export folder")
    return Source(text, "file", path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "source"


def results_dir(text: str | Path) -> Path:
    """Where an evaluation writes by default: the run folder of a run, an export folder itself, a folder named
    after a release file next to it (``dino.pth`` -> ``dino/``), ``./<name>`` for timm and Hub names."""
    from vitssl.checkpoints import run_dir_of

    source = parse_source(text)
    if source.kind == "run" and source.path is not None:
        return run_dir_of(source.path)
    if source.kind == "export" and source.path is not None:
        return source.path
    if source.kind == "file" and source.path is not None:
        return source.path.with_suffix("")
    if source.kind == "hf" and source.path is not None:
        return source.path
    return Path(_slug(source.text))


def _config(
    source: Source,
    backbone: str,
    kwargs: dict[str, Any],
    method: str = "dino",
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    image_size: int = DEFAULT_SIZE,
) -> PretrainConfig:
    """The settings of a source that carries no vitssl config: its architecture and an evaluation transform."""
    cfg = PretrainConfig()
    cfg.name, cfg.method = _slug(Path(source.text).name or source.text), method
    cfg.model.backbone = backbone
    cfg.model.patch_size = kwargs.get("patch_size")
    cfg.model.img_size = kwargs.get("img_size")
    cfg.model.depth = kwargs.get("depth")
    cfg.model.window_size = kwargs.get("window_size")
    cfg.train.out_dir = str(results_dir(source.text))
    _apply_data(cfg, DataOverrides(tuple(mean), tuple(std), image_size))
    return cfg


def _apply_data(cfg: PretrainConfig, data: DataOverrides) -> None:
    if data.mean is not None:
        cfg.data.mean = list(data.mean)
    if data.std is not None:
        cfg.data.std = list(data.std)
    if data.image_size is not None:
        cfg.crops.global_size = data.image_size
        cfg.data.eval_size = data.image_size
        cfg.data.eval_resize = round(data.image_size * RESIZE_RATIO)


def _timm_kwargs(name: str) -> dict[str, Any]:
    """What makes a timm model take any image size, as vitssl builds its own."""
    return {"strict_img_size": False} if "swin" in name else {"dynamic_img_size": True}


def _timm_data(model: Any, source: Source, backbone: str, kwargs: dict[str, Any]) -> PretrainConfig:
    pcfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    size = int(pcfg.get("input_size", (3, DEFAULT_SIZE, DEFAULT_SIZE))[-1])
    cfg = _config(
        source,
        backbone,
        kwargs,
        mean=tuple(pcfg.get("mean", IMAGENET_MEAN)),
        std=tuple(pcfg.get("std", IMAGENET_STD)),
        image_size=size,
    )
    crop = float(pcfg.get("crop_pct") or 1 / RESIZE_RATIO)
    cfg.data.eval_resize = int(size / crop)
    return cfg


def _from_timm(source: Source, at_init: bool, seed: int) -> tuple[PretrainConfig, Backbone]:
    import timm

    name = str(source.name)
    arch, _, tag = name.partition(".")
    if not timm.is_model(arch):
        raise VitsslError(f"timm has no model {arch!r}; use a timm ViT or Swin name such as vit_small_patch16_224.dino")
    kwargs: dict[str, Any] = {"num_classes": 0, **_timm_kwargs(arch)}
    if source.path is not None:
        if not source.path.is_file():
            raise VitsslError(f"weights file {source.path} of {source.text} does not exist; fix the path after @")
        kwargs["pretrained_cfg_overlay"] = {"file": str(source.path)}
    torch.manual_seed(seed)
    try:
        model = timm.create_model(name, pretrained=not at_init, **kwargs)
    except Exception as exc:  # network errors, a file of another architecture...: timm raises many types
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise VitsslError(
            f"timm could not create {name} with its weights ({first}); offline, download the file and pass "
            f"timm:{name}@/path/to/file"
        ) from None
    # DINO's releases in timm are the authors' weights: evaluate them with the authors' interpolation
    backbone = Backbone(model, pos_interpolation="dino" if tag in DINO_TAGS and "swin" not in arch else "timm")
    return _timm_data(model, source, arch, {"patch_size": backbone.patch_size}), backbone


def _timm_folder(source: Source, folder: Path, config: dict[str, Any], at_init: bool, seed: int) -> tuple:
    """A folder in timm's hub layout (``vitssl export --format timm|hf``, TimmWrapper folders)."""
    import timm

    from vitssl.models.weights import _WEIGHT_FILES  # the file names every folder reader accepts

    arch = str(config["architecture"])
    weights = next((folder / n for n in _WEIGHT_FILES if (folder / n).is_file()), None)
    if weights is None and not at_init:
        raise VitsslError(f"{folder} has a config.json but no model.safetensors or pytorch_model.bin")
    args: dict[str, Any] = {**_timm_kwargs(arch), **dict(config.get("model_args") or {}), "num_classes": 0}
    if not at_init:
        args["pretrained_cfg_overlay"] = {"file": str(weights)}
    torch.manual_seed(seed)
    try:
        model: Any = timm.create_model(arch, pretrained=not at_init, **args)
    except Exception as exc:  # a file of another shape: timm's load_state_dict raises RuntimeError
        first = str(exc).splitlines()[0][:200]
        raise VitsslError(f"timm cannot load {folder} as {arch} ({first}); is config.json from this folder?") from None
    model.pretrained_cfg = {**dict(model.pretrained_cfg or {}), **dict(config.get("pretrained_cfg") or {})}
    pooled = str((config.get("vitssl") or {}).get("pooled", ""))
    backbone: Backbone
    if int(args.get("reg_tokens", 0)) == 1:  # vitssl's SiT export: the pooled token the run chose
        from vitssl.methods.sit.heads import SiTBackbone

        feature = next(
            (
                f
                for key, f in (("contrastive", "contrastive"), ("rotation", "rotation"), ("patch tokens", "patch_mean"))
                if key in pooled
            ),
            "tokens_mean" if pooled else "contrastive",
        )
        backbone = SiTBackbone(model, feature)  # type: ignore[arg-type]
    else:
        backbone = Backbone(model)
    return _timm_data(model, source, arch, args), backbone


def _native_folder(source: Source, folder: Path, at_init: bool) -> tuple[PretrainConfig, Backbone]:
    """A ``vitssl export --format safetensors`` folder: the run's config rebuilds the method's eval backbone."""
    import yaml

    from vitssl.config import from_dict
    from vitssl.methods import build_method
    from vitssl.models.weights import load_backbone_weights

    try:
        cfg = from_dict(yaml.safe_load((folder / "config.yaml").read_text()))
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise VitsslError(f"{folder}/config.yaml is not a vitssl config ({type(exc).__name__}); re-export") from None
    torch.manual_seed(cfg.train.seed)
    backbone = build_method(cfg).eval_backbone()
    if not at_init:
        load_backbone_weights(backbone, folder, strict=True)
    cfg.train.out_dir = str(folder)
    return cfg, backbone


def _hf_vit_folder(source: Source, folder: Path, config: dict[str, Any], at_init: bool, seed: int) -> tuple:
    from vitssl.models.hf_vit import build_from_vit_config, vit_model_to_timm
    from vitssl.models.weights import load_state, read_weights

    torch.manual_seed(seed)
    backbone = build_from_vit_config(config)
    if not at_init:
        state, where = read_weights(folder)
        load_state(backbone, vit_model_to_timm(state), where, strict=True)
    size = int(config.get("image_size", DEFAULT_SIZE))
    kwargs = {"patch_size": backbone.patch_size, "img_size": size, "depth": len(backbone.blocks())}
    return _config(source, "vit_base", kwargs, image_size=size), backbone


def _folder(source: Source, folder: Path, at_init: bool, seed: int) -> tuple[PretrainConfig, Backbone]:
    if (folder / "config.yaml").is_file() and not (folder / "config.json").is_file():
        return _native_folder(source, folder, at_init)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise VitsslError(f"{folder}/config.json is unreadable ({type(exc).__name__}); fix or re-export it") from None
    if isinstance(config, dict) and "architecture" in config:
        return _timm_folder(source, folder, config, at_init, seed)
    if isinstance(config, dict) and config.get("model_type") == "vit":
        return _hf_vit_folder(source, folder, config, at_init, seed)
    kind = config.get("model_type") if isinstance(config, dict) else None
    raise VitsslError(
        f"{folder}/config.json describes a {kind or 'unknown'} model; vitssl reads timm folders (architecture) and "
        "transformers ViTModel folders (model_type vit)"
    )


def _from_hf(source: Source, at_init: bool, seed: int) -> tuple[PretrainConfig, Backbone]:
    folder = source.path
    if folder is None:
        try:
            from huggingface_hub import snapshot_download

            folder = Path(
                snapshot_download(str(source.name), allow_patterns=["*.json", "*.safetensors", "pytorch_model.bin"])
            )
        except Exception as exc:  # offline, unknown repository, missing package: one line whatever the cause
            raise VitsslError(
                f"could not fetch {source.name} from the Hugging Face Hub ({type(exc).__name__}); offline, pass "
                "hf:/path/to/a/downloaded/folder"
            ) from None
    if not (folder / "config.json").is_file():
        raise VitsslError(f"{folder} has no config.json; pass a transformers ViTModel or TimmWrapper folder")
    return _folder(source, folder, at_init, seed)


def _read_file(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from vitssl.models.weights import read_weights

        return read_weights(path)[0]
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torn files, pickled code, foreign formats: torch raises several types
        raise VitsslError(
            f"could not read {path} with torch.load(weights_only=True) ({type(exc).__name__}); pass a weights file "
            "(.pth of DINO/SiT/EsViT, .safetensors), a run, an export folder, timm:NAME or hf:REPO"
        ) from None
    if isinstance(obj, dict) and "method" in obj and "config" in obj:
        raise _IsRun()
    return obj


class _IsRun(Exception):
    """A file that turned out to be a vitssl checkpoint under another name."""


def _from_file(source: Source, arch: str | None, at_init: bool, seed: int) -> tuple[PretrainConfig, Backbone]:
    from vitssl.eval.releases import METHOD_OF, load_release, recognise_release, unwrap_checkpoint

    assert source.path is not None
    state, where = unwrap_checkpoint(_read_file(source.path), str(source.path))
    release = recognise_release(state, where, arch)
    backbone, report = load_release(release, at_init=at_init, seed=seed)
    if report is not None:
        print(f"vitssl: {release.layout} release: {report.summary()}", file=sys.stderr)
    method = METHOD_OF[release.layout]
    return _config(source, release.backbone, release.kwargs, method, image_size=release.image_size), backbone


def resolve_source(
    source: str | Path,
    *,
    arch: str | None = None,
    at_init: bool = False,
    device: str | torch.device = "cpu",
    init: str | Path | None = None,
    init_strict: bool = True,
    data: DataOverrides | None = None,
    seed: int = 0,
) -> tuple[PretrainConfig, Backbone]:
    """The settings and the frozen evaluation backbone of any SOURCE (what the evaluation commands load).

    Args:
        source: See the module docstring.
        arch: For release files: a preset or timm name overriding the inferred widths and heads.
        at_init: The same architecture at initialisation instead (a run: its own seed; otherwise ``seed``).
        device: Where to put the backbone.
        init: Then load these backbone weights into it (``--init``), checked by name and shape.
        init_strict: With ``init``: refuse unless everything matches.
        data: Evaluation-transform overrides (``--mean``, ``--std``, ``--image-size``).
        seed: The seed of a foreign source's random initialisation.

    Raises:
        VitsslError: One line naming the problem and the fix (unknown layout, missing or extra tensors...).
    """
    parsed = parse_source(source)
    if parsed.kind == "file" and parsed.path is not None:
        try:
            cfg, backbone = _from_file(parsed, arch, at_init, seed)
        except _IsRun:
            parsed = Source(parsed.text, "run", parsed.path)
    if parsed.kind == "run":
        from vitssl.eval.loading import load_backbone as load_run

        cfg, backbone = load_run(parsed.text, at_init=at_init, device=device, init=init, init_strict=init_strict)
        init = None
    elif parsed.kind == "export" and parsed.path is not None:
        cfg, backbone = _folder(parsed, parsed.path, at_init, seed)
    elif parsed.kind == "timm":
        cfg, backbone = _from_timm(parsed, at_init, seed)
    elif parsed.kind == "hf":
        cfg, backbone = _from_hf(parsed, at_init, seed)
    if init is not None and not at_init:
        from vitssl.models.weights import load_backbone_weights

        print(f"vitssl: --init: {load_backbone_weights(backbone, init, strict=init_strict).summary()}", file=sys.stderr)
    if data is not None:
        _apply_data(cfg, data)
    backbone = backbone.to(device).eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    return cfg, backbone


def load_backbone(source: str | Path, arch: str | None = None, device: str | torch.device = "cpu") -> Backbone:
    """The evaluation backbone of any SOURCE, frozen and in eval mode.

    ``backbone.pooled(images)`` on normalised images (ImageNet mean/std for the authors' releases) is the
    feature the source's authors evaluate: for DINO's release files exactly what their ``model(images)``
    returns, at any image size (DINO's position-embedding interpolation).

    Args:
        source: A run folder or checkpoint, an export folder, ``timm:NAME.TAG[@FILE]``, ``hf:REPO_OR_FOLDER``,
            or a DINO / SiT / EsViT release file (see :mod:`vitssl.eval.sources`).
        arch: For release files: a preset or timm name overriding the architecture read off the tensors.
        device: Where to put it.

    Example:
        >>> import vitssl
        >>> backbone = vitssl.load_backbone("dino_deitsmall8_pretrain.pth")
        >>> backbone.pooled(images).shape
        torch.Size([B, 384])
    """
    return resolve_source(source, arch=arch, device=device)[1]
