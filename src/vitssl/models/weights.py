"""Loading backbone weights from elsewhere: a timm/safetensors file, a Hugging Face folder, or a vitssl run.

Every source is reduced to a flat ``{timm parameter name: tensor}`` dictionary, then matched against the
backbone's own timm model name by name *and* shape. Nothing is loaded silently: the result is a
:class:`LoadReport` that says what was loaded and what was not, and with ``strict=True`` any difference is a
one-line :class:`~vitssl.errors.VitsslError`.

Sources understood (see ``docs/export.md``):

* a ``.safetensors`` file (timm names, ``vitssl export --format timm|hf|safetensors``, or any timm weights);
* a folder holding ``model.safetensors`` (or a sharded ``model.safetensors.index.json``, or
  ``pytorch_model.bin``): an export of ``vitssl export`` or a Hugging Face ``TimmWrapperModel`` folder;
* a vitssl run folder or checkpoint (``last.pt``): its teacher backbone where the method has one, else the
  student's (read with :func:`vitssl.checkpoints.load_checkpoint`, so this module needs no method code);
* another ``.pt``/``.pth``/``.bin`` state dict, e.g. the official DINO checkpoints (``{"teacher": ...}`` with
  ``module.backbone.`` prefixes), read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from vitssl.errors import VitsslError

__all__ = ["LoadReport", "load_backbone_weights", "load_state", "normalise_keys", "read_weights"]

# Prefixes that wrap a backbone's timm names in the checkpoints we meet: DDP (``module.``), torch.compile
# (``_orig_mod.``), our ``Backbone`` (``model.``), our methods (``student.backbone.``, ``teacher.backbone.``),
# DINO's official files (``module.backbone.``) and transformers' TimmWrapperModel (``timm_model.``).
_STRIP_PREFIXES = ("module.", "_orig_mod.", "backbone.", "timm_model.", "model.")
# When a file holds whole networks, the backbone lives under one of these (teacher first: it is what vitssl
# evaluates and exports by default).
_NETWORK_PREFIXES = ("teacher.backbone.", "student.backbone.", "module.backbone.", "backbone.")
# Buffers that timm rebuilds itself and does not save (timm's own Swin filter drops them too).
_REBUILT_BUFFERS = ("relative_position_index", "attn_mask")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_SHOWN = 3  # how many names a one-line report lists before "and N more"


@dataclass
class LoadReport:
    """What :func:`load_backbone_weights` did.

    Attributes:
        source: The file or folder the weights came from (and which network inside it).
        loaded: Names (timm's) of the tensors copied into the backbone.
        missing: Backbone tensors that the source does not have (left as they were).
        unexpected: Source tensors that the backbone does not have (ignored).
        mismatched: ``(name, source shape, backbone shape)`` of tensors present in both with different shapes.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every tensor matched: nothing missing, unexpected or of another shape."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """One line: how much was loaded, then each kind of difference with its first few names."""
        total = len(self.loaded) + len(self.missing) + len(self.mismatched)
        parts = [f"loaded {len(self.loaded)}/{total} backbone tensors from {self.source}"]
        if self.mismatched:
            shapes = [f"{n} {tuple(s)} in the source vs {tuple(t)} in the backbone" for n, s, t in self.mismatched]
            parts.append(f"{len(self.mismatched)} of another shape ({_first(shapes)})")
        if self.missing:
            parts.append(f"{len(self.missing)} missing from the source ({_first(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} not in the backbone ({_first(self.unexpected)})")
        return "; ".join(parts)


def _first(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _STRIP_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def normalise_keys(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """Reduce a state dict to timm names of one backbone.

    If the keys hold whole networks (``teacher.backbone.…`` and ``student.backbone.…``, or ``backbone.…``
    next to heads), only the first backbone found in :data:`_NETWORK_PREFIXES` order is kept; then the
    wrapping prefixes (``module.``, ``backbone.``, ``timm_model.``, ``model.``...) are stripped.

    Returns:
        The renamed tensors, and the prefix that was selected ("" when the keys were not networks).
    """
    chosen = next((p for p in _NETWORK_PREFIXES if any(k.startswith(p) for k in state)), "")
    picked = {k[len(chosen) :]: v for k, v in state.items() if k.startswith(chosen)}
    out: dict[str, Tensor] = {}
    for key, value in picked.items():
        name = _strip(key)
        if name in out:
            raise VitsslError(f"two tensors of the source map to the same name {name!r}; pass a single network")
        out[name] = value
    return out, chosen


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for foreign or torn files
        raise VitsslError(f"could not read {path} as safetensors ({type(exc).__name__}); use a valid file") from None


def _read_torch(path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for torn, pickled-code or foreign files
        raise VitsslError(
            f"could not read {path} with torch.load(weights_only=True) ({type(exc).__name__}); "
            "use a safetensors file or a plain state dict"
        ) from None
    if isinstance(obj, dict) and "method" in obj and "config" in obj:
        return obj["method"]  # a vitssl checkpoint
    # Common wrappers: DINO's official checkpoints ({"teacher": ..., "student": ...}), {"state_dict": ...}.
    for key in ("teacher", "state_dict", "model", "student"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return obj[key]
    if isinstance(obj, dict) and all(isinstance(v, Tensor) for v in obj.values()):
        return obj
    raise VitsslError(f"{path} holds no state dict of tensors; pass a weights file, an export folder or a run")


def _read_folder(path: Path) -> tuple[dict[str, Tensor], str]:
    from vitssl.checkpoints import LAST, load_checkpoint

    if (path / LAST).is_file():
        return load_checkpoint(path)["method"], str(path / LAST)
    index = path / "model.safetensors.index.json"
    if index.is_file():  # a sharded Hugging Face folder: the index maps each tensor to its shard
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError):
            raise VitsslError(f"{index} is not a safetensors index (no weight_map); fix or delete it") from None
        state: dict[str, Tensor] = {}
        for shard in shards:
            state.update(_read_safetensors(path / shard))
        return state, str(index)
    for name in _WEIGHT_FILES:
        if (path / name).is_file():
            reader = _read_safetensors if name.endswith(".safetensors") else _read_torch
            return reader(path / name), str(path / name)
    raise VitsslError(
        f"{path} holds no weights (looked for {LAST}, model.safetensors, pytorch_model.bin); pass a run folder, "
        "an export folder or a weights file"
    )


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], str]:
    """Read the backbone tensors of any supported source, renamed to timm names.

    Args:
        path: A ``.safetensors`` file, a ``.pt``/``.pth``/``.bin`` file (a vitssl checkpoint or a state dict),
            a run folder (its ``last.pt``) or an export / Hugging Face folder.

    Returns:
        ``({timm name: tensor}, description of the source)``.
    """
    path = Path(path)
    if path.is_dir():
        state, where = _read_folder(path)
    elif path.is_file():
        reader = _read_safetensors if path.suffix == ".safetensors" else _read_torch
        state, where = reader(path), str(path)
    else:
        raise VitsslError(f"weights {path} do not exist; pass a weights file, an export folder or a run folder")
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    renamed, prefix = normalise_keys(tensors)
    if prefix:
        where += f" ({prefix.rstrip('.')})"
    return renamed, where


def _target_state(backbone: nn.Module) -> dict[str, Tensor]:
    """The backbone's tensors under timm names (our ``Backbone`` keeps the timm model as ``.model``)."""
    model = getattr(backbone, "model", backbone)
    return dict(model.state_dict())


def load_backbone_weights(backbone: nn.Module, path: str | Path, strict: bool = True) -> LoadReport:
    """Load weights from ``path`` into ``backbone``, checking every name and shape.

    Args:
        backbone: A :class:`vitssl.models.backbones.Backbone` (or a bare timm model).
        path: Any source of :func:`read_weights`.
        strict: Refuse (with a one-line error) unless names and shapes match exactly; with ``False``, load the
            tensors that match and report the rest.

    Returns:
        The :class:`LoadReport`; ``report.summary()`` is one line for a log.

    Raises:
        VitsslError: ``strict`` and any tensor missing, unexpected or of another shape; or an unreadable source.

    Example:
        >>> report = load_backbone_weights(build_backbone("vit_small"), "export/model.safetensors")
        >>> print(report.summary())
    """
    source, where = read_weights(path)
    return load_state(backbone, source, where, strict=strict)


def load_state(backbone: nn.Module, source: Mapping[str, Tensor], where: str, strict: bool = True) -> LoadReport:
    """Load ``source`` (tensors under timm's names) into ``backbone``, checking every name and shape.

    The in-memory half of :func:`load_backbone_weights`, for sources already read and renamed (the authors'
    release files, a transformers ``ViTModel``...); ``where`` names the source in the report and in errors.

    Raises:
        VitsslError: ``strict`` and any tensor missing, unexpected or of another shape; or no tensor fits.
    """
    source = {k: v for k, v in source.items() if not k.endswith(_REBUILT_BUFFERS)}
    target = _target_state(backbone)
    report = LoadReport(source=where)
    for name, tensor in target.items():
        if name not in source:
            report.missing.append(name)
        elif tuple(source[name].shape) != tuple(tensor.shape):
            report.mismatched.append((name, tuple(source[name].shape), tuple(tensor.shape)))
        else:
            report.loaded.append(name)
    report.unexpected = [k for k in source if k not in target]
    if strict and not report.complete:
        raise VitsslError(
            f"weights do not fit this backbone: {report.summary()}; use weights of the same architecture "
            "(model.backbone, patch_size, img_size, depth...) or load with strict=False"
        )
    if not report.loaded:
        raise VitsslError(f"no tensor of {where} fits this backbone: {report.summary()}; is it a ViT/Swin backbone?")
    model = getattr(backbone, "model", backbone)
    with torch.no_grad():
        model.load_state_dict({k: source[k] for k in report.loaded}, strict=False)
    return report
