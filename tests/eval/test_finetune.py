import json

import pytest
import torch

from vitssl.cli import main
from vitssl.errors import VitsslError
from vitssl.eval.finetune import Classifier, FinetuneSettings, SeededTransform, finetune_lr, layer_id, param_groups
from vitssl.models.backbones import build_backbone
from vitssl.schedules import cosine_schedule


def _classifier(depth=3):
    torch.manual_seed(0)
    return Classifier(build_backbone("vit_tiny", patch_size=4, img_size=16, depth=depth), num_classes=4)


def test_layer_ids_of_a_vit():
    model = _classifier()
    ids = {name: layer_id(name, model.backbone, 3) for name, _ in model.named_parameters()}
    assert ids["backbone.model.cls_token"] == 0 and ids["backbone.model.patch_embed.proj.weight"] == 0
    assert ids["backbone.model.blocks.0.attn.qkv.weight"] == 1
    assert ids["backbone.model.blocks.2.mlp.fc2.bias"] == 3
    assert ids["backbone.model.norm.weight"] == 4 and ids["heads.0.weight"] == 4


def test_param_groups_decay_lr_by_depth_and_skip_weight_decay_on_norms():
    model = _classifier()
    groups = param_groups(model, FinetuneSettings(layer_decay=0.5, weight_decay=0.05))
    by_param = {id(p): g for g in groups for p in g["params"]}
    head = by_param[id(model.heads[0].weight)]
    first = by_param[id(model.backbone.model.blocks[0].attn.qkv.weight)]
    embed = by_param[id(model.backbone.model.patch_embed.proj.weight)]
    assert head["lr_scale"] == 1.0 and first["lr_scale"] == 0.5**3 and embed["lr_scale"] == 0.5**4
    assert head["weight_decay"] == 0.05
    assert by_param[id(model.backbone.model.norm.weight)]["weight_decay"] == 0.0
    assert by_param[id(model.backbone.model.cls_token)]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_sit_heads_need_a_sit_backbone():
    with pytest.raises(VitsslError, match="SiT"):
        Classifier(build_backbone("vit_tiny", patch_size=4, img_size=16, depth=1), 3, sit_heads=True)


def test_seeded_transform_is_reproducible_and_leaves_global_rng_alone():
    import random

    from PIL import Image

    transform = SeededTransform(lambda image: (random.random(), torch.rand(1).item()))
    random.seed(1)
    before = random.random()
    random.seed(1)
    a = transform(Image.new("RGB", (4, 4)), torch.Generator().manual_seed(7))
    b = transform(Image.new("RGB", (4, 4)), torch.Generator().manual_seed(7))
    assert a == b and random.random() == before


def test_finetune_loss_falls_and_reports_every_epoch(tiny_run, capsys):
    args = ["finetune", str(tiny_run), "--epochs", "6", "--lr", "0.02", "--batch-size", "8", "--warmup-epochs", "0"]
    args += ["--no-randaugment", "--mixup", "0", "--cutmix", "0", "--label-smoothing", "0", "--num-workers", "0"]
    assert main([*args, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "epoch 6:" in out and "top-5" in out
    history = json.loads((tiny_run / "finetune.json").read_text())["history"]
    assert len(history) == 6
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    saved = torch.load(tiny_run / "finetuned.pt", weights_only=True)
    assert "blocks.0.attn.qkv.weight" in saved["backbone"] and saved["classes"] == ["a", "b"]


def test_finetune_with_randaugment_mixup_cutmix_runs(tiny_run):
    args = ["finetune", str(tiny_run), "--epochs", "1", "--batch-size", "8", "--num-workers", "0", "--device", "cpu"]
    assert main(args) == 0
    assert json.loads((tiny_run / "finetune.json").read_text())["settings"]["mixup"] == 0.8


def test_layer_ids_of_a_swin():
    backbone = build_backbone("swin_mini_32", img_size=32)
    model = Classifier(backbone, num_classes=3)
    ids = {name: layer_id(name, backbone, 6) for name, _ in model.named_parameters()}
    assert ids["backbone.model.patch_embed.proj.weight"] == 0
    assert ids["backbone.model.layers.0.blocks.1.attn.qkv.weight"] == 2
    assert ids["backbone.model.layers.1.downsample.reduction.weight"] == 3  # merging joins its stage's first block
    assert ids["backbone.model.layers.2.blocks.1.attn.relative_position_bias_table"] == 6
    assert ids["backbone.model.norm.weight"] == 7 and ids["heads.0.weight"] == 7


def test_finetune_at_init_writes_its_own_files(tiny_run):
    args = ["finetune", str(tiny_run), "--init-only", "--epochs", "1", "--batch-size", "8", "--mixup", "0"]
    assert main([*args, "--cutmix", "0", "--num-workers", "0", "--device", "cpu"]) == 0
    assert json.loads((tiny_run / "finetune_init.json").read_text())["at_init"] is True
    assert (tiny_run / "finetuned_init.pt").is_file()


def test_finetune_warmup_counts_the_current_step() -> None:
    peak, total, warmup = 1.0, 20, 4
    assert [finetune_lr(s, total, peak, warmup, 0.0) for s in range(warmup)] == [0.25, 0.5, 0.75, 1.0]
    for step in range(warmup, total):
        assert finetune_lr(step, total, peak, warmup, 0.1) == cosine_schedule(step, total, peak, 0.1, warmup)
    assert finetune_lr(0, total, peak, 0, 0.0) == peak  # no warm-up: the cosine from its top
