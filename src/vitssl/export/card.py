"""The model card (``README.md``) written into every export folder.

Sections follow the Hugging Face model-card guidance (architecture, training procedure, data, evaluation,
how to use; https://huggingface.co/docs/hub/model-cards), filled from the run folder: its config, and any
evaluation results that ``vitssl knn``, ``linear``, ``finetune``... left there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from vitssl.config import to_dict
from vitssl.export.authors_layout import AUTHOR_FORMATS, LAYOUTS
from vitssl.export.source import ExportSource
from vitssl.export.timm_spec import timm_spec
from vitssl.methods.registry import method_info

# Result files that the evaluation commands write into a run folder (see vitssl.report.page).
RESULT_FILES = (
    "knn.json",
    "knn_online.json",
    "linear.json",
    "linear_fast.json",
    "finetune.json",
    "segment.json",
    "attention_score.json",
    "correspondence.json",
)
_MAX_ROWS = 30


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        rows: list[tuple[str, Any]] = []
        for key, item in value.items():
            rows += _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return rows
    return [(prefix, value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def results_section(run_dir: Path) -> str:
    """A table of the numbers in each result file of the run folder (first rows of each), or a pointer."""
    parts: list[str] = []
    for name in RESULT_FILES:
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            rows = _flatten(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            parts.append(f"`{name}`: unreadable, skipped.\n")
            continue
        table = "\n".join(f"| {k} | {v:.4g} |" for k, v in rows[:_MAX_ROWS])
        more = f"\n\n({len(rows) - _MAX_ROWS} more values in `{name}`)" if len(rows) > _MAX_ROWS else ""
        parts.append(f"From `{name}`:\n\n| metric | value |\n|---|---|\n{table}{more}\n")
    if not parts:
        return "No evaluation results were found in the run folder (run `vitssl knn RUN` or `vitssl linear RUN`).\n"
    return "\n".join(parts)


def usage_section(fmt: str, source: ExportSource, out: Path, tokens: bool) -> str:
    """How to load this export, for its format."""
    spec = timm_spec(source.cfg)
    args = ", ".join(f"{k}={v!r}" for k, v in spec.model_args.items())
    if fmt == "safetensors":
        return (
            "```python\nfrom vitssl.models.backbones import build_backbone   # or build_sit_backbone for SiT\n"
            "from vitssl.models.weights import load_backbone_weights\n"
            f"backbone = build_backbone({source.cfg.model.backbone!r}, ...)  # the settings of config.yaml\n"
            f'print(load_backbone_weights(backbone, "{out}/model.safetensors").summary())\n```\n'
        )
    if fmt == "timm":
        return (
            "```python\nimport timm\n"
            f'model = timm.create_model("{spec.architecture}", pretrained=True, num_classes=0,\n'
            f'                          pretrained_cfg_overlay=dict(file="{out}/model.safetensors"), {args})\n'
            f'# or: model = timm.create_model("local-dir:{out}", pretrained=True)\n'
            "x = model.forward_features(images)  # final-norm tokens\n```\n"
        )
    if fmt == "hf":
        return (
            "```python\nfrom transformers import AutoImageProcessor, AutoModel\n"
            f'model = AutoModel.from_pretrained("{out}")            # TimmWrapperModel\n'
            f'processor = AutoImageProcessor.from_pretrained("{out}")  # the run\'s resize, crop, mean, std\n'
            "x = model(**processor(images, return_tensors='pt')).last_hidden_state\n```\n"
        )
    if fmt in AUTHOR_FORMATS:
        name = f"{source.cfg.name}_{fmt}_{source.which}"
        cls = LAYOUTS[fmt].cls
        return (
            f"```python\nimport json, torch\nkwargs = json.load(open('{out}/{name}.json'))['kwargs']\n"
            f"# {cls} from the authors' repository, built with kwargs (norm_layer: LayerNorm eps 1e-6)\n"
            f"state = torch.load('{out}/{name}.pth', weights_only=True)  # model.load_state_dict(state, strict=True)\n"
            f"# or, in vitssl: vitssl.load_backbone('{out}/{name}.pth')\n```\n"
        )
    outputs = "pooled (B, D), tokens (B, N, D)" if tokens else "pooled (B, D)"
    return (
        "```python\nimport onnxruntime as ort\n"
        f'session = ort.InferenceSession("{out}/model.onnx")\n'
        f'outputs = session.run(None, {{"pixel_values": images}})  # {outputs}\n'
        "# images: float32 (B, 3, H, W), normalised as above\n```\n"
    )


def write_card(
    source: ExportSource, out: Path, fmt: str, files: list[Path], checks: dict[str, float], tokens: bool = False
) -> Path:
    """Write ``out/README.md`` for an export of ``fmt``."""
    from vitssl.export.timm_folder import pooled_recipe

    cfg, backbone = source.cfg, source.backbone
    spec = timm_spec(cfg)
    size = source.image_size
    params = sum(p.numel() for p in backbone.parameters())
    kind = "Swin" if backbone.is_swin else "ViT"
    check_rows = "\n".join(f"| {name} | {value:.2e} |" for name, value in checks.items())
    text = f"""# {cfg.model.backbone} pretrained with {cfg.method}

Exported by `vitssl export --format {fmt}` from `{source.checkpoint}` (run `{cfg.name}`, {source.which} network).

## Architecture

- backbone: `{cfg.model.backbone}` = timm `{spec.architecture}` with `{json.dumps(spec.model_args)}`
- {kind}, {params / 1e6:.2f} M parameters, feature width {backbone.embed_dim}, patch {backbone.patch_size}
- pooled feature, from timm's `x = forward_features(images)`: {pooled_recipe(source)}
- files: {", ".join(f"`{f.name}`" for f in files)}

## Method

{method_info(cfg.method).paper}; the exported network is the {source.which}.

## Data and preprocessing

- training data: `{cfg.data.train}`
- evaluation transform: bicubic resize of the short side to {cfg.data.eval_resize or size}, centre crop {size}, then
  normalise with mean {list(cfg.data.mean)} and std {list(cfg.data.std)} (pixels in 0..1)

## Evaluation

{results_section(source.run_dir)}
## How to load

{usage_section(fmt, source, out, tokens)}
## Export checks

Maximum absolute difference from the training backbone on random input, measured when exporting:

| check | max abs diff |
|---|---|
{check_rows}

## Config

```yaml
{yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip()}
```
"""
    path = out / "README.md"
    path.write_text(text)
    return path
