import pytest
import torch

from vitssl.config import load_config
from vitssl.data.batches import ViewBatch
from vitssl.methods import EsViT, build_method
from vitssl.models import build_backbone
from vitssl.schedules import StepState

TINY = [
    "method=esvit",
    "model.backbone=vit_tiny",
    "model.patch_size=4",
    "model.depth=1",
    "model.drop_path=0.0",
    "crops.global_size=16",
    "crops.local_size=8",
    "crops.local_count=2",
    "dino.out_dim=32",
    "dino.hidden_dim=16",
    "dino.bottleneck_dim=8",
]
TINY_SWIN = ["model.backbone=swin_mini_32", "model.patch_size=null", "model.depth=null"]


def tiny_esvit(*extra) -> EsViT:
    torch.manual_seed(0)
    method = build_method(load_config(None, TINY + list(extra)))
    assert isinstance(method, EsViT)
    return method


def views(batch, sizes=(16, 16, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, s, s, generator=g) for s in sizes]


def state(step=100, spe=10, log=True):
    return StepState(
        step=step,
        steps_per_epoch=spe,
        total_steps=1000,
        values={"teacher_temp": 0.04, "teacher_momentum": 0.99},
        log=log,
    )


@pytest.mark.parametrize("backbone", [[], TINY_SWIN])
def test_step_trains_both_heads_and_logs_region_statistics(backbone):
    method = tiny_esvit(*backbone)
    out = method.training_step(ViewBatch(views=views(4)), state())
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert method.student["head"].last_layer.weight_v.grad is not None
    assert method.student["region_head"].last_layer.weight_v.grad is not None
    assert {"loss_view", "loss_region", "match_similarity", "match_coverage"} <= set(out.metrics)
    assert 0 < float(out.metrics["match_coverage"]) <= 1


def test_zero_local_crops_and_two_local_sizes():
    zero = tiny_esvit("crops.local_count=0")
    assert len(zero.views) == 2
    zero.training_step(ViewBatch(views=views(3, sizes=(16, 16))), state()).loss.backward()
    two_sizes = tiny_esvit()
    out = two_sizes.training_step(ViewBatch(views=views(3, sizes=(16, 16, 8, 8, 12, 12))), state())
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_region_loss_waits_for_its_start_epoch():
    method = tiny_esvit("esvit.region_loss_start=2")
    early = method.training_step(ViewBatch(views=views(4)), state(step=10, spe=10))  # epoch 1.0 < 2
    early.loss.backward()
    assert "loss_region" not in early.metrics and early.metrics["region_on"] == 0.0
    assert all(p.grad is None for p in method.student["region_head"].parameters())
    late = method.training_step(ViewBatch(views=views(4)), state(step=25, spe=10))
    assert "loss_region" in late.metrics and late.metrics["region_on"] == 1.0


def test_last_layers_of_both_heads_are_frozen_in_the_first_epoch():
    method = tiny_esvit("dino.freeze_last_layer=1")
    method.training_step(ViewBatch(views=views(4)), state(step=5, spe=10)).loss.backward()
    method.before_optimizer_step(state(step=5, spe=10))
    for head in ("head", "region_head"):
        assert method.student[head].last_layer.weight_v.grad is None
        assert method.student[head].mlp[0].weight.grad is not None


def test_teacher_follows_both_student_heads_and_both_centres_move():
    method = tiny_esvit()
    with torch.no_grad():
        for p in method.student.parameters():
            p.add_(1.0)
    method.training_step(ViewBatch(views=views(4)), state())
    centres = (method.loss_fn.center.clone(), method.loss_fn.center_region.clone())
    method.after_optimizer_step(state())
    t_region = dict(method.teacher["region_head"].named_parameters())
    for name, p in method.student["region_head"].named_parameters():
        if p.requires_grad:
            # teacher = 0.99 teacher + 0.01 student, both started equal and the student moved by +1
            torch.testing.assert_close(t_region[name], p - 0.99)
    assert not torch.equal(centres[0], method.loss_fn.center)
    assert not torch.equal(centres[1], method.loss_fn.center_region)


def test_evaluates_the_teacher_backbone():
    method = tiny_esvit()
    assert method.eval_backbone() is method.teacher["backbone"]


@pytest.mark.parametrize(
    ("name", "img_size", "sizes", "grids"),
    [
        ("swin_mini_32", 32, (32, 16, 24), ((4, 4), (2, 2), (3, 3))),
        ("swin_tiny_32", 32, (32, 16), ((4, 4), (2, 2))),
        ("swin_tiny", 224, (224, 96), ((7, 7), (3, 3))),
    ],
)
def test_swin_presets_accept_every_crop_size_of_their_recipes(name, img_size, sizes, grids):
    backbone = build_backbone(name, img_size=img_size)
    for size, grid in zip(sizes, grids, strict=True):
        with torch.no_grad():
            f = backbone(torch.randn(1, 3, size, size))
        assert f.grid == grid and f.tokens.shape == (1, grid[0] * grid[1], backbone.embed_dim)
        torch.testing.assert_close(f.pooled, f.tokens.mean(1))


def test_swin_intermediate_is_the_paper_linear_probe_width():
    backbone = build_backbone("swin_tiny", img_size=224)
    with torch.no_grad():
        feats = backbone.intermediate(torch.randn(1, 3, 224, 224), n=4)
    assert sum(f.shape[-1] for f in feats) == 2304  # docs/methods.md 2.3: 2304-d for Swin-T


def test_vit_intermediate_last_block_is_the_pooled_feature():
    backbone = build_backbone("vit_tiny", patch_size=4, img_size=16, depth=2).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        feats = backbone.intermediate(x, n=2, patch_mean=True)
        torch.testing.assert_close(feats[1], backbone.pooled(x))
        torch.testing.assert_close(feats[2], backbone(x).tokens.mean(1))
    assert [f.shape for f in feats] == [(2, 192)] * 3


@pytest.mark.parametrize("backbone", [[], TINY_SWIN])
def test_non_square_crops_work(backbone):
    method = tiny_esvit(*backbone)
    g = torch.Generator().manual_seed(0)
    crops = [torch.randn(2, 3, 16, 24, generator=g) for _ in range(2)] + [torch.randn(2, 3, 8, 16, generator=g)]
    out = method.training_step(ViewBatch(views=crops), state())
    out.loss.backward()
    assert torch.isfinite(out.loss)
    grid = method.student["backbone"](crops[0]).grid
    assert grid == ((4, 6) if not backbone else (2, 3))


def test_koleo_weight_adds_the_regulariser_of_the_global_crops():
    """The KoLeo term DINO composes (dino_family.global_crop_koleo) is EsViT's too: w x the mean over the global
    crops."""
    from vitssl.losses.koleo import koleo_loss

    plain, koleo = tiny_esvit(), tiny_esvit("dino.koleo_weight=0.25")
    batch = ViewBatch(views=views(6))
    base = plain.training_step(batch, state()).loss
    out = koleo.training_step(batch, state())
    expected = sum(koleo_loss(koleo.student["backbone"](v).pooled) for v in batch.views[:2]) / 2
    assert out.loss.item() == pytest.approx(base.item() + 0.25 * expected.item(), rel=1e-5)
    assert out.metrics["koleo"].item() == pytest.approx(expected.item(), rel=1e-5)
