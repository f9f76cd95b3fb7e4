"""``load_backbone_weights``: every source (timm / safetensors file, Hugging Face folder, vitssl run or
checkpoint, foreign state dicts) loads strictly, mismatched shapes are refused in one line, and a partial load
reports what it skipped."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from vitssl.errors import VitsslError
from vitssl.export import export_run
from vitssl.models.backbones import build_backbone
from vitssl.models.weights import load_backbone_weights, normalise_keys

from .conftest import images_for


def _fresh_vit(depth: int = 1, patch: int = 4):
    torch.manual_seed(123)
    return build_backbone("vit_tiny", patch_size=patch, img_size=16, depth=depth).eval()


def _same_features(a, b, cfg) -> float:
    x = images_for(cfg)
    with torch.no_grad():
        return float((a(x).pooled - b(x).pooled).abs().max())


@pytest.fixture(scope="module")
def timm_export(runs, tmp_path_factory) -> Path:
    return export_run(runs["vit"], "timm", tmp_path_factory.mktemp("w") / "timm").out


@pytest.fixture(scope="module")
def native_export(runs, tmp_path_factory) -> Path:
    return export_run(runs["vit"], "safetensors", tmp_path_factory.mktemp("n") / "native", with_heads=True).out


@pytest.mark.parametrize("source", ["run", "checkpoint", "timm_folder", "timm_file", "native_with_heads"])
def test_every_source_loads_the_teacher_strictly(source, runs, timm_export, native_export, reference):
    cfg, teacher = reference("vit")
    path = {
        "run": runs["vit"],
        "checkpoint": runs["vit"] / "last.pt",
        "timm_folder": timm_export,
        "timm_file": timm_export / "model.safetensors",
        "native_with_heads": native_export / "model.safetensors",  # backbone.model.* and head.* keys
    }[source]
    backbone = _fresh_vit()
    report = load_backbone_weights(backbone, path)
    assert report.complete and len(report.loaded) == len(backbone.model.state_dict())
    assert _same_features(backbone, teacher, cfg) == 0.0
    assert "\n" not in report.summary() and "loaded" in report.summary()


def test_swin_and_sit_runs_load_into_fresh_backbones(runs, reference):
    from vitssl.methods.sit.heads import build_sit_backbone

    cfg, teacher = reference("swin")
    swin = build_backbone("swin_mini_32", img_size=32).eval()
    assert load_backbone_weights(swin, runs["swin"]).complete
    assert _same_features(swin, teacher, cfg) == 0.0
    cfg, student = reference("sit")  # SiT's original variant has no teacher: the student is read
    sit = build_sit_backbone("vit_tiny", 4, 16, 1, 0.0).eval()
    report = load_backbone_weights(sit, runs["sit"])
    assert "student.backbone" in report.source
    assert _same_features(sit, student, cfg) == 0.0


def test_dino_style_checkpoint_with_prefixes_and_heads(tmp_path, reference):
    cfg, teacher = reference("vit")
    state = {f"module.backbone.{k}": v for k, v in teacher.model.state_dict().items()}
    state["module.head.last_layer.weight"] = torch.zeros(4, 4)
    path = tmp_path / "dino.pth"
    torch.save({"teacher": state, "epoch": 3}, path)
    backbone = _fresh_vit()
    assert load_backbone_weights(backbone, path).complete  # the head is dropped: only the backbone is taken
    assert _same_features(backbone, teacher, cfg) == 0.0


def test_hugging_face_saved_keys_are_understood(tmp_path, reference):
    from safetensors.torch import save_file

    _, teacher = reference("vit")
    folder = tmp_path / "hf"
    folder.mkdir()
    state = {f"timm_model.{k}": v.contiguous() for k, v in teacher.model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    assert load_backbone_weights(_fresh_vit(), folder).complete


def test_mismatched_shapes_are_refused_in_one_line(runs):
    backbone = _fresh_vit(patch=8)  # the run has patch 4: patch embedding and position embedding differ
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    with pytest.raises(VitsslError) as err:
        load_backbone_weights(backbone, runs["vit"])
    message = str(err.value)
    print(message)
    assert "\n" not in message
    assert "patch_embed.proj.weight (192, 3, 4, 4) in the source vs (192, 3, 8, 8) in the backbone" in message
    assert "strict=False" in message
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())  # nothing half-loaded


def test_partial_load_reports_what_was_skipped(runs, reference):
    cfg, teacher = reference("vit")
    deeper = _fresh_vit(depth=2)  # the run has one block: block 1 is missing from the source
    with pytest.raises(VitsslError, match="missing from the source"):
        load_backbone_weights(deeper, runs["vit"])
    report = load_backbone_weights(deeper, runs["vit"], strict=False)
    print(report.summary())
    assert not report.complete and not report.unexpected and not report.mismatched
    assert report.missing and all(k.startswith("blocks.1.") for k in report.missing)
    assert torch.equal(deeper.model.blocks[0].attn.qkv.weight, teacher.model.blocks[0].attn.qkv.weight)
    assert "\n" not in report.summary() and f"{len(report.missing)} missing from the source" in report.summary()


def test_nothing_in_common_is_an_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(VitsslError, match="no tensor"):
        load_backbone_weights(_fresh_vit(), path, strict=False)


def test_missing_and_unreadable_sources_are_one_line(tmp_path):
    with pytest.raises(VitsslError, match="do not exist"):
        load_backbone_weights(_fresh_vit(), tmp_path / "nowhere.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(VitsslError, match="could not read"):
        load_backbone_weights(_fresh_vit(), bad)
    with pytest.raises(VitsslError, match="holds no weights"):
        load_backbone_weights(_fresh_vit(), tmp_path)


def test_network_prefixes_pick_the_teacher():
    state = {"student.backbone.model.a": torch.zeros(1), "teacher.backbone.model.a": torch.ones(1)}
    renamed, prefix = normalise_keys(state)
    assert prefix == "teacher.backbone." and torch.equal(renamed["a"], torch.ones(1))


def test_weights_module_keeps_to_the_models_layer():
    source = Path(__file__).parents[2] / "src" / "vitssl" / "models" / "weights.py"
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    forbidden = ("vitssl.engine", "vitssl.methods", "vitssl.eval", "vitssl.commands", "vitssl.data", "vitssl.export")
    assert not [m for m in imported if m and m.startswith(forbidden)]


def test_sharded_hugging_face_folder_is_read_through_its_index(tmp_path, reference):
    import json

    from safetensors.torch import save_file

    cfg, teacher = reference("vit")
    state = {k: v.contiguous() for k, v in teacher.model.state_dict().items()}
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(tmp_path / shard), metadata={"format": "pt"})
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    backbone = _fresh_vit()
    assert load_backbone_weights(backbone, tmp_path).complete
    assert _same_features(backbone, teacher, cfg) == 0.0
