import math

import pytest
import torch

from vitssl.losses import DINOLoss


def _softmax(xs):
    exps = [math.exp(x) for x in xs]
    return [e / sum(exps) for e in exps]


def test_loss_matches_hand_computed_example():
    # K=3, B=1, two global crops (g0, g1) and one local crop (l0); centre 0.
    tau_s, tau_t = 0.1, 0.05
    s = [[1.0, 0.0, -1.0], [0.5, 0.2, 0.1], [0.0, 0.3, 0.0]]  # student logits for g0, g1, l0
    t = [[0.2, 0.1, 0.0], [0.0, 0.0, 0.4]]  # teacher logits for g0, g1
    p_t = [_softmax([x / tau_t for x in row]) for row in t]
    log_p_s = [[math.log(p) for p in _softmax([x / tau_s for x in row])] for row in s]
    # pairs: (g0, g1), (g0, l0), (g1, g0), (g1, l0) -> 4 terms
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]
    expected = sum(-sum(pt * ls for pt, ls in zip(p_t[g], log_p_s[v], strict=True)) for g, v in pairs) / len(pairs)

    loss_fn = DINOLoss(out_dim=3, student_temp=tau_s)
    loss = loss_fn([torch.tensor([row]) for row in s], [torch.tensor([row]) for row in t], teacher_temp=tau_t)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_uniform_teacher_and_student_gives_log_k():
    k = 65536
    loss_fn = DINOLoss(out_dim=k)
    student = [torch.zeros(4, k) for _ in range(10)]
    teacher = [torch.zeros(4, k) for _ in range(2)]
    assert loss_fn(student, teacher, 0.04).item() == pytest.approx(math.log(k), rel=1e-5)


def test_uniform_teacher_is_log_k_plus_student_excess():
    # With a uniform teacher, the loss is the mean over pairs of logsumexp(s/tau) - mean(s/tau) >= ln K.
    torch.manual_seed(0)
    loss_fn = DINOLoss(out_dim=16)
    student = [torch.randn(3, 16) for _ in range(3)]
    teacher = [torch.zeros(3, 16), torch.zeros(3, 16)]
    loss = loss_fn(student, teacher, 0.04).item()
    assert loss > math.log(16)


def test_forward_changes_no_state_and_update_center_applies_momentum():
    torch.manual_seed(0)
    loss_fn = DINOLoss(out_dim=5, center_momentum=0.9)
    loss_fn.center.fill_(0.5)
    teacher = [torch.randn(4, 5), torch.randn(4, 5)]
    student = [torch.randn(4, 5, requires_grad=True) for _ in range(4)]
    before = loss_fn.center.clone()
    loss_fn(student, teacher, 0.04).backward()
    assert torch.equal(loss_fn.center, before)
    loss_fn.update_center(teacher)
    expected = 0.9 * before + 0.1 * torch.cat(teacher).mean(0, keepdim=True)
    torch.testing.assert_close(loss_fn.center, expected)


def test_centering_changes_targets():
    loss_fn = DINOLoss(out_dim=3)
    student = [torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])]
    teacher = [torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])]
    plain = loss_fn(student, teacher, 0.1).item()
    loss_fn.center.copy_(torch.tensor([[1.0, 0.0, 0.0]]))  # removes the teacher's preference entirely
    centred = loss_fn(student, teacher, 0.1).item()
    assert plain != pytest.approx(centred)


def test_gradient_flows_to_student_only():
    loss_fn = DINOLoss(out_dim=4)
    s = [torch.randn(2, 4, requires_grad=True) for _ in range(3)]
    t = [torch.randn(2, 4, requires_grad=True) for _ in range(2)]
    loss_fn(s, t, 0.04).backward()
    assert all(x.grad is not None for x in s)
    assert all(x.grad is None for x in t)


def test_center_update_gated_on_the_device():
    """A skipped step (flag False) leaves the centre alone even when its teacher logits are NaN; True moves it
    exactly as the ungated update does."""
    rows = [torch.randn(4, 8), torch.randn(4, 8)]
    plain, gated, skipped = DINOLoss(8), DINOLoss(8), DINOLoss(8)
    plain.update_center(rows)
    gated.update_center(rows, torch.tensor(True))
    torch.testing.assert_close(gated.center, plain.center)
    skipped.update_center([torch.full((4, 8), float("nan"))], torch.tensor(False))
    assert torch.equal(skipped.center, torch.zeros(1, 8))
