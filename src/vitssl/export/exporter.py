"""``export_run``: one run's network, written in one format into a folder, checked, with a model card."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vitssl.errors import VitsslError
from vitssl.export.authors_layout import AUTHOR_FORMATS
from vitssl.export.source import ExportSource, Which, load_export_source

FORMATS = ("safetensors", "timm", "hf", "onnx", *AUTHOR_FORMATS)


@dataclass
class ExportResult:
    """What :func:`export_run` wrote.

    Attributes:
        out: The export folder.
        files: The files written (weights, configs, README.md).
        checks: Max absolute difference from the training backbone, per check (see ``docs/export.md``).
        which: The network exported (teacher or student).
    """

    out: Path
    files: list[Path] = field(default_factory=list)
    checks: dict[str, float] = field(default_factory=dict)
    which: str = ""


def require_extras(fmt: str) -> None:
    """Fail fast, before any loading, on an unknown format or a missing optional package."""
    if fmt not in FORMATS:
        raise VitsslError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "hf":
        from vitssl.export.hf import require_transformers

        require_transformers()
    elif fmt == "onnx":
        from vitssl.export.onnx_file import require_onnx

        require_onnx()


def prepare_out(out: Path) -> Path:
    """Create the export folder and make sure a file can be written there, with a one-line error if not."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VitsslError(f"--out {out} is a file; pass a folder to write the export into")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".vitssl-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise VitsslError(
            f"cannot write to --out {out} ({exc.strerror or type(exc).__name__}); pick another folder"
        ) from None
    return out


def _write(
    source: ExportSource, fmt: str, out: Path, with_heads: bool, tokens: bool, dynamic_size: bool | None
) -> ExportResult:
    result = ExportResult(out=out, which=source.which)
    if fmt in AUTHOR_FORMATS:
        from vitssl.export.authors_layout import write_authors

        files, checks = write_authors(source, fmt, out)
        result.files += files
        result.checks.update(checks)
    elif fmt == "safetensors":
        from vitssl.export.native import check_native, write_native

        path = write_native(source, out, with_heads)
        result.files += [path, out / "config.yaml"]
        result.checks.update(check_native(source, path))
    elif fmt in ("timm", "hf"):
        from vitssl.export.timm_folder import CONFIG, WEIGHTS, check_timm_folder, write_timm_folder

        spec = write_timm_folder(source, out)
        result.files += [out / WEIGHTS, out / CONFIG]
        if fmt == "timm":
            result.checks.update(check_timm_folder(source, out, spec))
        else:  # the same folder; transformers builds the same timm module from it
            from vitssl.export.hf import check_hf_folder

            result.checks.update(check_hf_folder(source, out))
    else:
        from vitssl.export.onnx_file import check_onnx, export_onnx, onnx_files

        path = export_onnx(source, out, tokens=tokens, dynamic_size=dynamic_size)
        result.files += onnx_files(path)
        result.checks.update(check_onnx(source, path, tokens=tokens, dynamic_size=dynamic_size))
    return result


def export_run(
    checkpoint: str | Path,
    fmt: str,
    out: str | Path,
    which: Which | None = None,
    with_heads: bool = False,
    tokens: bool = False,
    dynamic_size: bool | None = None,
) -> ExportResult:
    """Export a run's network and check the export against the training backbone.

    Args:
        checkpoint: A run folder or checkpoint file.
        fmt: ``safetensors`` (vitssl names), ``timm``, ``hf`` (transformers' TimmWrapperModel), ``onnx``, or
            the authors' layouts ``dino`` / ``sit`` (``esvit`` is refused in one line: see ``authors_layout``).
        out: The folder to write into (created).
        which: ``teacher`` or ``student``; default: the teacher where the method has one.
        with_heads: Also write the method's heads (in the safetensors file itself for ``safetensors``, as
            ``heads.safetensors`` next to the backbone otherwise).
        tokens: ONNX only: output the patch tokens too.
        dynamic_size: ONNX only: dynamic image height/width (default: yes for ViT, no for Swin).

    Raises:
        VitsslError: Unknown format, missing optional package, unwritable ``out``, unreadable checkpoint, or an
            export that does not reproduce the backbone.
    """
    require_extras(fmt)
    source = load_export_source(checkpoint, which)  # first, so that a bad checkpoint leaves no empty folder
    out = prepare_out(Path(out))
    result = _write(source, fmt, out, with_heads, tokens, dynamic_size)
    if with_heads and fmt != "safetensors":  # the safetensors file holds the heads itself
        from vitssl.export.native import write_heads

        heads = write_heads(source, out)
        result.files += [heads] if heads is not None else []
    from vitssl.export.card import write_card

    result.files.append(write_card(source, out, fmt, result.files, result.checks, tokens))
    return result
