"""The SiT method: network layout, one training step, the masked variant, pictures, and a tiny run end to end."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_OVERRIDES
from vitssl.api import build_trainer
from vitssl.config import load_config
from vitssl.data.seeding import sample_generator
from vitssl.errors import VitsslError
from vitssl.methods import build_method
from vitssl.methods.sit.heads import ReconstructionHead, build_sit_backbone
from vitssl.methods.sit.method import rotation_accuracy
from vitssl.methods.sit.views import SiTCollate
from vitssl.schedules import StepState

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "sit"
SIT_TINY = [
    "method=sit",
    "data.batch_size=4",
    "data.num_workers=0",
    "model.backbone=vit_tiny",
    "model.patch_size=4",
    "model.depth=1",
    "crops.global_size=16",
    "sit.blur_kernel=[3, 5]",
    "train.progress=false",
]


def _cfg(*extra):
    return load_config(None, [*SIT_TINY, *extra])


def _batch(method, n=4, seed=0):
    transform, collate = method.train_transform(), method.train_collate()
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(n):
        pixels = torch.randint(0, 256, (20, 20, 3), generator=gen, dtype=torch.uint8).numpy()
        views = transform(Image.fromarray(pixels), sample_generator(0, 0, i))
        samples.append({"views": views, "label": 0, "index": i, "skipped": 0})
    return collate(samples)


def test_backbone_has_rotation_and_contrastive_tokens_with_position_embeddings():
    backbone = build_sit_backbone("vit_tiny", 4, 16, 1, 0.0)
    model = backbone.model
    assert backbone.num_prefix_tokens == 2
    assert model.pos_embed.shape == (1, 16 + 2, 192)  # N + 2 positions
    tokens = backbone.tokens_by_role(torch.randn(3, 3, 16, 16))
    assert tokens.rotation.shape == tokens.contrastive.shape == (3, 192)
    assert tokens.patches.shape == (3, 16, 192) and tokens.grid == (4, 4)
    assert not torch.allclose(tokens.rotation, tokens.contrastive)
    # other image sizes work too (interpolated position embeddings)
    assert backbone.tokens_by_role(torch.randn(1, 3, 24, 32)).patches.shape == (1, 6 * 8, 192)


@pytest.mark.parametrize(("patch", "rows", "cols"), [(4, 4, 4), (8, 3, 5), (16, 1, 2)])
def test_reconstruction_head_reassembles_patches_in_place(patch, rows, cols):
    head = ReconstructionHead(dim=6, patch_size=patch)
    tokens = torch.randn(2, rows * cols, 6)
    image = head(tokens, (rows, cols))
    assert image.shape == (2, 3, rows * patch, cols * patch)
    # the same as folding each token's pixels (channel-major, like ConvTranspose2d with kernel = stride = patch)
    folded = F.fold(head.net(tokens).transpose(1, 2), (rows * patch, cols * patch), kernel_size=patch, stride=patch)
    assert torch.allclose(image, folded)


def test_training_step_gives_all_losses_weights_and_rotation_accuracy():
    torch.manual_seed(0)
    method = build_method(_cfg())
    batch = _batch(method)
    out = method.training_step(batch, StepState(step=0, steps_per_epoch=1, total_steps=1))
    assert torch.isfinite(out.loss)
    for key in ("loss_rot", "loss_con", "loss_rec", "weight_rot", "weight_con", "weight_rec", "rot_acc"):
        assert key in out.metrics, key
    assert out.metrics["weight_rec"].item() == pytest.approx(torch.exp(torch.tensor(-0.5)).item())
    out.loss.backward()
    model = method.student["backbone"].model
    for param in (model.cls_token, model.reg_token, model.pos_embed, method.student["rot"].weight):
        assert param.grad is not None and param.grad.abs().sum() > 0
    assert all(p.grad is not None for p in method.weighting.parameters())


def test_tokens_and_uncertainties_get_no_weight_decay():
    method = build_method(_cfg())
    groups = method.param_groups()
    no_decay = {id(p) for p in groups[1]["params"]}
    model = method.student["backbone"].model
    assert id(model.cls_token) in no_decay and id(model.reg_token) in no_decay
    assert all(id(p) in no_decay for p in method.weighting.parameters())
    assert id(model.patch_embed.proj.weight) not in no_decay
    total = sum(len(g["params"]) for g in groups)
    assert total == len(list(method.parameters()))  # nothing left out, nothing twice


def test_fixed_weighting_and_rotation_off():
    method = build_method(_cfg("sit.weighting=fixed", "sit.rotations=[0]", "sit.rec_weight=2.0"))
    out = method.training_step(_batch(method), StepState(step=0, steps_per_epoch=1, total_steps=1))
    assert "loss_rot" not in out.metrics and "rot" not in method.student
    expected = out.metrics["loss_con"] + 2.0 * out.metrics["loss_rec"]
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_koleo_weight_adds_the_regulariser_of_the_contrastive_tokens():
    """sit.koleo_weight=w adds w x the mean KoLeo loss of the student's contrastive token over the two views, and
    a logged step reports the tokens' spread."""
    from vitssl.losses.koleo import koleo_loss

    torch.manual_seed(0)
    method = build_method(_cfg("sit.weighting=fixed", "sit.koleo_weight=0.5"))
    batch = _batch(method)
    state = StepState(step=0, steps_per_epoch=1, total_steps=1, log=True)
    out = method.training_step(batch, state)
    tokens = [method.student["backbone"].tokens_by_role(v).contrastive for v in batch.views]
    expected = sum(koleo_loss(t) for t in tokens) / 2
    tasks = out.metrics["loss_rot"] + out.metrics["loss_con"] + out.metrics["loss_rec"]
    assert out.loss.item() == pytest.approx(tasks.item() + 0.5 * expected.item(), rel=1e-5)
    assert out.metrics["koleo"].item() == pytest.approx(expected.item(), rel=1e-5)
    spread = F.normalize(torch.cat(tokens), dim=-1).std(dim=0).mean()
    assert out.metrics["feature_std"].item() == pytest.approx(spread.item(), rel=1e-5)


def test_reconstruction_loss_falls_when_overfitting_one_batch():
    torch.manual_seed(0)
    method = build_method(_cfg("sit.weighting=fixed", "sit.rot_weight=0", "sit.con_weight=0"))
    batch = _batch(method, n=4)
    state = StepState(step=0, steps_per_epoch=1, total_steps=1)
    opt = torch.optim.AdamW(method.parameters(), lr=2e-3, weight_decay=0.0)
    first = None
    for _ in range(60):
        opt.zero_grad()
        out = method.training_step(batch, state)
        out.loss.backward()
        opt.step()
        first = first if first is not None else out.metrics["loss_rec"].item()
    last = out.metrics["loss_rec"].item()
    assert last < 0.5 * first, (first, last)


def test_masked_variant_uses_an_ema_teacher_and_only_corrupted_pixels():
    cfg = _cfg(
        "sit.variant=masked",
        "sit.drop_fill=zeros",
        "sit.drop_area=[0.5, 0.5]",
        "sit.replace_area=[0.3, 0.3]",
        "sit.replace_p=0.5",
        "sit.replace_excludes_drop=true",
        "sit.grayscale_p=0",
        "sit.blur_p=0",
    )
    torch.manual_seed(0)
    method = build_method(cfg)
    assert method.rotations == [0] and "rot" not in method.student
    teacher, student = method.teacher["backbone"].model, method.student["backbone"].model
    assert torch.equal(teacher.pos_embed, student.pos_embed)
    batch = _batch(method)
    assert all(m.float().mean() >= 0.3 for m in batch.masks[0])
    state = StepState(step=0, steps_per_epoch=1, total_steps=10)
    state.values = method.schedule(0, 1, 10)
    assert state.values["teacher_momentum"] == pytest.approx(0.996)
    out = method.training_step(batch, state)
    assert set(out.metrics) >= {"loss_con", "loss_rec", "weight_con", "weight_rec"}
    out.loss.backward()
    assert all(p.grad is None for p in method.teacher.parameters())
    with torch.no_grad():
        for p in method.student.parameters():
            p.add_(1.0)
    method.after_optimizer_step(state)
    assert not torch.equal(teacher.pos_embed, student.pos_embed)
    assert torch.allclose(teacher.pos_embed, student.pos_embed - 0.996, atol=1e-5)
    assert method.eval_backbone() is method.teacher["backbone"]


def test_masked_reconstruction_ignores_clean_pixels():
    method = build_method(_cfg("sit.variant=masked", "sit.drop_area=[0.5, 0.5]", "sit.drop_fill=zeros"))
    batch = _batch(method)
    views = torch.cat(batch.views)
    recon = method.reconstruct(views)
    masks = torch.cat(batch.masks)
    from vitssl.methods.sit.losses import reconstruction_l1

    base = reconstruction_l1(recon, torch.cat(batch.targets), masks)
    changed = torch.cat(batch.targets).clone()
    changed[~masks.unsqueeze(1).expand_as(changed)] += 5.0  # change only clean pixels of the target
    assert reconstruction_l1(recon, changed, masks).item() == pytest.approx(base.item())


@pytest.mark.parametrize("feature", ["contrastive", "rotation", "patch_mean", "tokens_mean"])
def test_knn_feature_choice(feature):
    method = build_method(_cfg(f"sit.knn_feature={feature}"))
    images = torch.randn(2, 3, 16, 16)
    backbone = method.eval_backbone().eval()
    pooled = backbone.pooled(images)
    tokens = backbone.tokens_by_role(images)
    expected = {
        "contrastive": tokens.contrastive,
        "rotation": tokens.rotation,
        "patch_mean": tokens.patches.mean(1),
        "tokens_mean": torch.cat([tokens.rotation[:, None], tokens.contrastive[:, None], tokens.patches], 1).mean(1),
    }[feature]
    assert torch.allclose(pooled, expected, atol=1e-6)


def test_pictures_returns_a_grid_and_the_run_folder_writes_it(tmp_path):
    from PIL import Image

    from vitssl.engine.run_folder import RunFolder

    method = build_method(_cfg())
    grid = method.pictures(_batch(method))["reconstruction"]
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    path = RunFolder(tmp_path).write_picture("reconstruction", 7, grid)
    assert path.name == "reconstruction_step000007.png" and path.stat().st_size > 0
    width, height = Image.open(path).size
    assert height > width / 4 * 3  # four rows of four images


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sit.drop_area=[0.4, 0.2]", "sit.drop_area"),
        ("sit.blur_kernel=[4, 8]", "sit.blur_kernel"),
        ("sit.rotations=[0, 5]", "sit.rotations"),
        ("sit.grayscale_p=2", "sit.grayscale_p"),
        ("data.batch_size=1", "batch_size"),
        ("sit.koleo_weight=-0.1", "sit.koleo_weight must be >= 0"),
    ],
)
def test_bad_sit_settings_name_the_key(override, message):
    with pytest.raises(VitsslError, match=message):
        _cfg(override)


def test_tiny_run_end_to_end_with_pictures_and_resume(tiny_image_folder, tmp_path):
    overrides = [
        *SIT_TINY,
        f"data.train={tiny_image_folder}",
        f"data.val={tiny_image_folder}",
        f"train.out_dir={tmp_path}",
        "optim.epochs=2",
        "train.picture_every=3",
        "train.checkpoint_every=3",
    ]
    result = build_trainer(load_config(None, overrides)).fit()
    assert result.steps == 12 and result.knn is not None
    pictures = sorted(p.name for p in (tmp_path / "pictures").iterdir())
    assert pictures == [f"reconstruction_step{s:06d}.png" for s in (3, 6, 9, 12)]
    # the checkpoint loads back (weights_only) into the same method for evaluation
    from vitssl.eval.loading import load_method

    _, method = load_method(tmp_path)
    assert method.name == "sit"
    from vitssl.cli import main

    out = tmp_path / "grid.png"
    assert main(["reconstruct", str(tmp_path), str(tiny_image_folder), "--count", "3", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    assert main(["reconstruct", str(tmp_path), str(tmp_path / "missing")]) == 2
    assert torch.equal(
        method.student["backbone"].model.reg_token,
        torch.load(tmp_path / "last.pt", weights_only=True)["method"]["student.backbone.model.reg_token"],
    )


def test_dino_keeps_its_default_transform_and_collate():
    from vitssl.data.loading.loader import collate_views

    dino = build_method(load_config(None, TINY_OVERRIDES))
    assert dino.train_transform() is None and dino.train_collate() is collate_views
    assert isinstance(build_method(_cfg()).train_collate(), SiTCollate)


SIT_PRESETS = sorted(p.name for p in CONFIGS.glob("*.yaml"))
assert SIT_PRESETS, f"no preset under {CONFIGS}"


@pytest.mark.parametrize("preset", SIT_PRESETS)
def test_presets_load_and_build(preset):
    cfg = load_config(CONFIGS / preset)
    method = build_method(cfg)
    assert method.name == "sit" and method.eval_backbone().feature == "contrastive"
    assert (cfg.sit.variant == "masked") == (method.teacher is not None)


def test_rotation_accuracy_is_a_percentage_and_needs_the_rotation_task():
    torch.manual_seed(0)
    method = build_method(_cfg())
    accuracy = rotation_accuracy(method, torch.randn(6, 3, 16, 16))
    assert 0.0 <= accuracy <= 100.0 and method.training
    with pytest.raises(VitsslError, match="no rotation task"):
        rotation_accuracy(build_method(_cfg("sit.rotations=[0]")), torch.randn(2, 3, 16, 16))


def test_tiny_masked_run_end_to_end(tiny_image_folder, tmp_path):
    overrides = [
        *SIT_TINY,
        "sit.variant=masked",
        f"data.train={tiny_image_folder}",
        f"train.out_dir={tmp_path}",
        "optim.epochs=1",
        "data.num_workers=1",  # the collate step and the transform travel to a worker process
    ]
    trainer = build_trainer(load_config(None, overrides))
    start = trainer.method.teacher["backbone"].model.pos_embed.clone()
    result = trainer.fit()
    assert result.steps == 6 and result.skipped_steps == 0
    assert not torch.equal(trainer.method.teacher["backbone"].model.pos_embed, start)  # the EMA moved the teacher
    assert (tmp_path / "pictures" / "reconstruction_step000006.png").is_file()


# -- the authors' settings (docs/methods.md 3.2, 3.4) ------------------------------------------------


def test_position_embedding_gets_no_weight_decay_unless_asked():
    model_groups = {}
    for flag in ("false", "true"):
        method = build_method(_cfg(f"sit.decay_pos_embed={flag}"))
        no_decay = {id(p) for p in method.param_groups()[1]["params"]}
        model_groups[flag] = id(method.student["backbone"].model.pos_embed) in no_decay
    assert model_groups == {"false": True, "true": False}


def test_masked_variant_takes_its_own_corruption_defaults_and_explicit_keys_win():
    from vitssl.methods.sit.corruptions import RandomDrop, RandomReplace
    from vitssl.methods.sit.method import corruption_pipeline

    masked = _cfg("sit.variant=masked").sit.resolved()
    assert (masked.grayscale_p, masked.blur_p, masked.drop_fill, masked.drop_area) == (0.0, 0.0, "zeros", [0.5, 0.5])
    assert (masked.replace_p, masked.replace_area, masked.replace_excludes_drop) == (0.5, [0.3, 0.3], True)
    original = _cfg().sit.resolved()
    assert (original.grayscale_p, original.drop_fill, original.drop_area) == (1.0, "noise", [0.0, 0.3])
    assert _cfg("sit.variant=masked", "sit.blur_p=0.3").sit.resolved().blur_p == 0.3
    steps = corruption_pipeline(_cfg("sit.variant=masked")).steps
    assert [type(s) for s in steps] == [RandomDrop, RandomReplace] and all(s.placement == "corner" for s in steps)
    inside = corruption_pipeline(_cfg("sit.box_placement=inside")).steps
    assert all(getattr(s, "placement", "inside") == "inside" for s in inside)


def test_authors_heads_batchnorm_projection_and_mlp_deconv_reconstruction():
    from torch import nn

    method = build_method(
        _cfg(
            "sit.variant=masked",
            "sit.proj_hidden_dim=32",
            "sit.proj_layers=3",
            "sit.proj_batch_norm=true",
            "sit.proj_dim=8",
            "sit.rec_head=mlp_deconv",
            "sit.contrastive_token=cls",
            "sit.view_augment=dino",
        )
    )
    con = method.student["con"].net
    # the authors' masked-variant head: Linear-BN-ReLU-Linear-BN-GELU-Linear-BatchNorm(affine=False)
    assert [type(m) for m in con] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.GELU] + [
        nn.Linear,
        nn.BatchNorm1d,
    ]
    assert con[-1].weight is None and con[-1].bias is None and con[1].weight is not None
    rec = method.student["rec"]
    assert sum(isinstance(m, nn.Linear) for m in rec.mlp) == 3 and rec.deconv.bias.shape == (3,)
    assert rec(torch.randn(2, 16, 192), (4, 4)).shape == (2, 3, 16, 16)
    backbone = method.eval_backbone()
    images = torch.randn(2, 3, 16, 16)
    backbone.eval()
    assert torch.allclose(backbone.tokens_by_role(images).contrastive, backbone.final_tokens(images)[:, 0])
    assert [(c.blur_p, c.solarize_p) for c in method.views] == [(1.0, 0.0), (0.1, 0.2)]
    out = method.training_step(_batch(method), StepState(step=0, steps_per_epoch=1, total_steps=1))
    assert torch.isfinite(out.loss)


def test_masked_contrastive_term_uses_the_authors_scale_by_default(monkeypatch):
    import vitssl.methods.sit.method as sit_module

    seen = []
    original = sit_module.symmetric_info_nce

    def spy(*args):
        seen.append(args[5])  # (s1, s2, t1, t2, temperature, scale, negatives)
        return original(*args)

    monkeypatch.setattr(sit_module, "symmetric_info_nce", spy)
    for override, expected in (("sit.info_nce_scale=mean", "mean"), ("sit.variant=masked", "two_tau_sum")):
        method = build_method(_cfg("sit.variant=masked", override))
        method.training_step(_batch(method), StepState(step=0, steps_per_epoch=1, total_steps=1))
        assert seen[-1] == expected


def test_cls_contrastive_token_needs_no_rotation_task():
    with pytest.raises(VitsslError, match="contrastive_token"):
        _cfg("sit.contrastive_token=cls")
    with pytest.raises(VitsslError, match="box_placement"):
        _cfg("sit.box_placement=centre")


def test_token_weight_decay_follows_the_variant_and_the_key_wins():
    """The 2021 code keeps pos_embed and both tokens out of weight decay; the masked code uses DINO's groups, which
    decay them (3-D tensors); sit.decay_tokens overrides either."""

    def decayed(*extra):
        method = build_method(_cfg(*extra))
        no_decay = {id(p) for p in method.param_groups()[1]["params"]}
        model = method.student["backbone"].model
        return [id(p) not in no_decay for p in (model.cls_token, model.reg_token, model.pos_embed)]

    assert decayed() == [False, False, False]
    assert decayed("sit.variant=masked") == [True, True, True]
    assert decayed("sit.variant=masked", "sit.decay_tokens=false") == [False, False, False]
    assert decayed("sit.decay_tokens=true") == [True, True, True]


def test_negatives_key_reaches_the_contrastive_loss(monkeypatch):
    import vitssl.methods.sit.method as sit_module

    seen = []
    original = sit_module.nt_xent
    monkeypatch.setattr(sit_module, "nt_xent", lambda *a: seen.append(a[3]) or original(*a))
    for value in ("per_process", "global"):
        method = build_method(_cfg(f"sit.negatives={value}"))
        method.training_step(_batch(method), StepState(step=0, steps_per_epoch=1, total_steps=1))
    assert seen == ["per_process", "global"]
    with pytest.raises(VitsslError, match="negatives"):
        _cfg("sit.negatives=everywhere")
