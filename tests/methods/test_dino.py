import copy

import pytest
import torch

from vitssl.config import load_config
from vitssl.data.batches import ViewBatch
from vitssl.methods import build_method
from vitssl.schedules import StepState

TINY = [
    "model.backbone=vit_tiny",
    "model.patch_size=4",
    "model.depth=2",
    "model.drop_path=0.0",
    "crops.global_size=16",
    "crops.local_size=8",
    "crops.local_count=2",
    "dino.out_dim=32",
    "dino.hidden_dim=16",
    "dino.bottleneck_dim=8",
]


def tiny_method(*extra):
    torch.manual_seed(0)
    return build_method(load_config(None, TINY + list(extra)))


def views(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, 16, 16, generator=g) for _ in range(2)] + [
        torch.randn(batch, 3, 8, 8, generator=g) for _ in range(2)
    ]


def state(step=100, spe=10):
    return StepState(
        step=step,
        steps_per_epoch=spe,
        total_steps=1000,
        values={"teacher_temp": 0.04, "teacher_momentum": 0.99},
    )


def test_views_follow_the_config():
    specs = tiny_method().views
    assert [s.size for s in specs] == [16, 16, 8, 8]
    assert specs[0].blur_p == 1.0 and specs[1].solarize_p == 0.2 and specs[2].blur_p == 0.5


def test_teacher_starts_equal_and_gets_no_gradients():
    m = tiny_method()
    for pt, ps in zip(m.teacher.parameters(), m.student.parameters(), strict=True):
        assert torch.equal(pt, ps) and not pt.requires_grad
    out = m.training_step(ViewBatch(views=views(4)), state())
    out.loss.backward()
    assert all(p.grad is None for p in m.teacher.parameters())
    assert any(p.grad is not None for p in m.student.parameters())


def test_one_backbone_call_per_resolution():
    m = tiny_method()
    calls = []
    m.student["backbone"].register_forward_hook(lambda mod, args, out: calls.append(args[0].shape))
    m.teacher["backbone"].register_forward_hook(lambda mod, args, out: calls.append(("t", args[0].shape)))
    m.training_step(ViewBatch(views=views(3)), state())
    assert calls == [("t", (6, 3, 16, 16)), (6, 3, 16, 16), (6, 3, 8, 8)]


def test_gradient_accumulation_matches_full_batch():
    full, half = tiny_method(), tiny_method()
    batch = views(8)
    s = state()
    out = full.training_step(ViewBatch(views=batch), s)
    out.loss.backward()
    losses = []
    for part in (slice(0, 4), slice(4, 8)):
        o = half.training_step(ViewBatch(views=[v[part] for v in batch]), s)
        (o.loss / 2).backward()
        losses.append(o.loss.item())
    assert sum(losses) / 2 == pytest.approx(out.loss.item(), rel=1e-5)
    for (name, a), b in zip(full.student.named_parameters(), half.student.parameters(), strict=True):
        if a.grad is not None:
            # fp32 sums in a different order: compare relative to the tensor's largest gradient
            assert (a.grad - b.grad).abs().max() <= 1e-5 * a.grad.abs().max() + 1e-7, name
    full.after_optimizer_step(s)
    half.after_optimizer_step(s)
    torch.testing.assert_close(full.loss_fn.center, half.loss_fn.center)
    assert full.loss_fn.center.abs().sum() > 0


def test_last_layer_frozen_in_first_epoch_only():
    m = tiny_method("dino.freeze_last_layer=1")
    for step, frozen in ((5, True), (10, False)):
        m.zero_grad()
        m.training_step(ViewBatch(views=views(2)), state(step=step)).loss.backward()
        m.before_optimizer_step(state(step=step))
        assert (m.student["head"].last_layer.weight_v.grad is None) == frozen


def test_teacher_ema_and_centre_update_once_per_optimizer_step():
    m = tiny_method()
    student_before = copy.deepcopy(m.student.state_dict())
    with torch.no_grad():
        for p in m.student.parameters():
            p.add_(1.0)
    teacher_before = copy.deepcopy(m.teacher.state_dict())
    m.training_step(ViewBatch(views=views(2)), state())
    assert torch.equal(m.loss_fn.center, torch.zeros_like(m.loss_fn.center))  # forward moved nothing
    m.after_optimizer_step(state())
    name = "backbone.model.cls_token"
    expected = 0.99 * teacher_before[name] + 0.01 * (student_before[name] + 1.0)
    torch.testing.assert_close(m.teacher.state_dict()[name], expected)
    assert m.loss_fn.center.abs().sum() > 0


def test_schedule_values():
    m = tiny_method("dino.warmup_teacher_temp_epochs=2", "dino.momentum_teacher=0.996")
    start = m.schedule(0, 10, 100)
    assert start["teacher_temp"] == pytest.approx(0.04) and start["teacher_momentum"] == pytest.approx(0.996)
    assert m.schedule(10, 10, 100)["teacher_temp"] == pytest.approx(0.055)
    assert m.schedule(20, 10, 100)["teacher_temp"] == pytest.approx(0.07)
    assert m.schedule(100, 10, 100)["teacher_momentum"] == pytest.approx(1.0)


def test_diagnostics_logged_on_log_steps():
    m = tiny_method()
    s = state()
    s.log = True
    metrics = m.training_step(ViewBatch(views=views(4)), s).metrics
    assert set(metrics) >= {"teacher_entropy", "kl_to_uniform", "center_norm", "feature_std"}
    assert 0 <= float(metrics["teacher_entropy"]) <= torch.log(torch.tensor(32.0)) + 1e-4


def test_koleo_weight_adds_the_regulariser_of_the_global_crops():
    """dino.koleo_weight=w adds w x the mean KoLeo loss of the student's [CLS] over the two global crops."""
    from vitssl.losses.koleo import koleo_loss

    plain, koleo = tiny_method(), tiny_method("dino.koleo_weight=0.5")
    batch = ViewBatch(views=views(6))
    base = plain.training_step(batch, state()).loss
    out = koleo.training_step(batch, StepState(**{**vars(state()), "log": True}))
    feats = koleo.student["backbone"]
    expected = sum(koleo_loss(feats(v).pooled) for v in batch.views[:2]) / 2
    assert out.loss.item() == pytest.approx(base.item() + 0.5 * expected.item(), rel=1e-5)
    assert out.metrics["koleo"].item() == pytest.approx(expected.item(), rel=1e-5)
