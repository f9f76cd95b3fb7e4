import torch
from torch import nn

from vitssl.optim import clip_gradients_per_tensor_, ema_update_, param_groups


def test_param_groups_exclude_biases_and_1d_tensors():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    model[2].weight.requires_grad = False
    decay, no_decay = param_groups(model.named_parameters())
    assert decay["apply_wd"] and not no_decay["apply_wd"] and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([8, 4])]
    assert {tuple(p.shape) for p in no_decay["params"]} == {(8,), (2,)}
    assert len(no_decay["params"]) == 4  # bias, norm weight, norm bias, last bias


def test_clipping_is_per_tensor_not_global():
    a = nn.Parameter(torch.zeros(3))
    b = nn.Parameter(torch.zeros(2))
    a.grad = torch.tensor([3.0, 4.0, 0.0])  # norm 5 -> clipped to 3
    b.grad = torch.tensor([0.6, 0.8])  # norm 1 -> untouched
    norms = clip_gradients_per_tensor_([a, b], max_norm=3.0)
    torch.testing.assert_close(norms, torch.tensor([5.0, 1.0]))
    torch.testing.assert_close(a.grad.norm(), torch.tensor(3.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(b.grad, torch.tensor([0.6, 0.8]))


def test_ema_formula():
    teacher = [torch.tensor([1.0, 2.0]), torch.tensor([[0.0]])]
    student = [torch.tensor([3.0, 4.0]), torch.tensor([[10.0]])]
    ema_update_(teacher, student, momentum=0.9)
    torch.testing.assert_close(teacher[0], torch.tensor([1.2, 2.2]))
    torch.testing.assert_close(teacher[1], torch.tensor([[1.0]]))


def test_ema_gated_on_the_device():
    """With a device flag: True is the plain EMA step (to rounding), False leaves the teacher exactly as it was
    (the student of a skipped step is unchanged, so finite)."""
    teacher, student = [torch.randn(5), torch.randn(2, 3)], [torch.randn(5), torch.randn(2, 3)]
    expected = [t.clone() for t in teacher]
    ema_update_(expected, student, 0.9)
    applied = [t.clone() for t in teacher]
    ema_update_(applied, student, 0.9, torch.tensor(True))
    for a, e in zip(applied, expected, strict=True):
        torch.testing.assert_close(a, e)
    kept = [t.clone() for t in teacher]
    ema_update_(kept, student, 0.9, torch.tensor(False))
    for k, t in zip(kept, teacher, strict=True):
        assert torch.equal(k, t)
