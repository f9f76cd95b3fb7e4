"""SiT losses against hand-computed values (Atito et al. 2021, arXiv 2104.03602, docs/methods.md section 3.3)."""

import math

import pytest
import torch

from vitssl.errors import VitsslError
from vitssl.losses import (
    FixedWeighting,
    UncertaintyWeighting,
    info_nce,
    nt_xent,
    reconstruction_l1,
    rotation_loss,
    symmetric_info_nce,
)


def test_nt_xent_matches_hand_computed_values():
    e = torch.eye(2)
    # Each query's positive has similarity 1, its two negatives 0: -log(e^2 / (e^2 + 1 + 1)) = log(1 + 2 e^-2).
    assert nt_xent(e, e, temperature=0.5).item() == pytest.approx(math.log(1 + 2 * math.exp(-2)), abs=1e-6)
    # Positives swapped: the positive has similarity 0, one negative 1, one 0: log(2 + e^2).
    assert nt_xent(e, e.flip(0), temperature=0.5).item() == pytest.approx(math.log(2 + math.exp(2)), abs=1e-6)


def test_nt_xent_normalises_and_uses_the_temperature():
    e = torch.eye(2)
    scaled = nt_xent(3 * e, 0.5 * e, temperature=0.5)
    assert scaled.item() == pytest.approx(math.log(1 + 2 * math.exp(-2)), abs=1e-6)
    assert nt_xent(e, e, temperature=1.0).item() == pytest.approx(math.log(1 + 2 * math.exp(-1)), abs=1e-6)


def test_nt_xent_general_case_against_an_explicit_loop():
    torch.manual_seed(0)
    z1, z2 = torch.randn(5, 3), torch.randn(5, 3)
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=-1)
    total = 0.0
    for i in range(10):
        pos = (i + 5) % 10
        num = math.exp(float(z[i] @ z[pos]) / 0.5)
        den = sum(math.exp(float(z[i] @ z[j]) / 0.5) for j in range(10) if j != i)
        total += -math.log(num / den)
    assert nt_xent(z1, z2).item() == pytest.approx(total / 10, rel=1e-5)


def test_nt_xent_gives_gradients_to_both_views_and_checks_its_input():
    z1, z2 = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    nt_xent(z1, z2).backward()
    assert z1.grad is not None and z2.grad is not None and z1.grad.abs().sum() > 0
    with pytest.raises(VitsslError, match="same shape"):
        nt_xent(torch.zeros(4, 8), torch.zeros(3, 8))
    with pytest.raises(VitsslError, match="temperature"):
        nt_xent(torch.eye(2), torch.eye(2), temperature=0)


def test_info_nce_hand_computed_and_symmetric():
    e = torch.eye(2)
    # query i against keys: positive similarity 1, one negative 0 -> log(1 + e^(-1/0.2))
    assert info_nce(e, e, temperature=0.2).item() == pytest.approx(math.log(1 + math.exp(-5)), abs=1e-6)
    assert info_nce(e, e.flip(0), temperature=0.2).item() == pytest.approx(math.log(1 + math.exp(5)), abs=1e-5)
    sym = symmetric_info_nce(e, e.flip(0), e.flip(0), e, temperature=0.2)  # s1 vs t2 = e, s2 vs t1 = e
    assert sym.item() == pytest.approx(math.log(1 + math.exp(-5)), abs=1e-6)


def test_rotation_loss_is_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 3))
    assert rotation_loss(logits, torch.tensor([0])).item() == pytest.approx(expected, abs=1e-6)


def test_reconstruction_l1_all_pixels_or_only_masked_ones():
    target = torch.zeros(1, 3, 2, 2)
    pred = torch.zeros(1, 3, 2, 2)
    pred[0, :, 0, 0] = 4.0  # error 4 on one pixel (3 channels)
    pred[0, :, 1, 1] = 1.0  # error 1 on another
    assert reconstruction_l1(pred, target).item() == pytest.approx((4 * 3 + 1 * 3) / 12)
    mask = torch.tensor([[[True, False], [False, False]]])
    assert reconstruction_l1(pred, target, mask).item() == pytest.approx(4.0)
    assert reconstruction_l1(pred, target, torch.zeros_like(mask)).item() == 0.0
    with pytest.raises(VitsslError, match="shape"):
        reconstruction_l1(pred, torch.zeros(1, 3, 4, 4))


def test_uncertainty_weighting_formula_and_gradients():
    weighting = UncertaintyWeighting({"rot": 1.0, "con": 1.0, "rec": 0.5}, init=1.0)
    with torch.no_grad():
        weighting.log_vars["con"].fill_(0.3)
    losses = {
        name: torch.tensor(value, requires_grad=True) for name, value in (("rot", 1.2), ("con", 3.0), ("rec", 0.7))
    }
    total = weighting(losses)
    expected = math.exp(-1.0) * 1.2 + 0.5 * 1.0 + math.exp(-0.3) * 3.0 + 0.5 * 0.3 + math.exp(-0.5) * 0.7 + 0.5 * 1.0
    assert total.item() == pytest.approx(expected, rel=1e-6)
    total.backward()
    # dL/dL_t = exp(-a_t s_t); dL/ds_t = -a_t exp(-a_t s_t) L_t + 0.5
    assert losses["rec"].grad.item() == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert weighting.log_vars["rot"].grad.item() == pytest.approx(-math.exp(-1.0) * 1.2 + 0.5, rel=1e-6)
    assert weighting.log_vars["con"].grad.item() == pytest.approx(-math.exp(-0.3) * 3.0 + 0.5, rel=1e-6)
    assert weighting.log_vars["rec"].grad.item() == pytest.approx(-0.5 * math.exp(-0.5) * 0.7 + 0.5, rel=1e-6)
    weights = weighting.weights()
    assert weights["rec"].item() == pytest.approx(math.exp(-0.5))


def test_uncertainty_weighting_settles_where_the_gradient_vanishes():
    # For a constant loss L the optimum of exp(-a s) L + 0.5 s is s* = ln(2 a L) / a.
    weighting = UncertaintyWeighting({"rec": 0.5})
    opt = torch.optim.SGD(weighting.parameters(), lr=0.5)
    for _ in range(500):
        opt.zero_grad()
        weighting({"rec": torch.tensor(3.0)}).backward()
        opt.step()
    assert weighting.log_vars["rec"].item() == pytest.approx(math.log(2 * 0.5 * 3.0) / 0.5, abs=1e-3)


def test_uncertainty_weighting_rejects_other_tasks():
    with pytest.raises(VitsslError, match="expected"):
        UncertaintyWeighting({"rot": 1.0})({"con": torch.tensor(1.0)})


def test_fixed_weighting():
    fixed = FixedWeighting({"rot": 0.5, "con": 2.0})
    total = fixed({"rot": torch.tensor(2.0), "con": torch.tensor(3.0)})
    assert total.item() == pytest.approx(0.5 * 2 + 2 * 3)
    assert list(fixed.parameters()) == []
