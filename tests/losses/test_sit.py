"""SiT losses against hand-computed values (Atito et al. 2021, arXiv 2104.03602, docs/methods.md section 3.3)."""

import math

import pytest
import torch

from vitssl.errors import VitsslError
from vitssl.methods.sit.losses import (
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


# -- golden values from the authors' formulas, with explicit loops (docs/methods.md 3.3 and 3.4) -----------------


def _cosine(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True)) / (
        math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    )


Z1 = [[1.0, 2.0, 0.0], [0.5, -1.0, 1.0], [-1.0, 0.0, 2.0]]
Z2 = [[1.0, 1.5, 0.5], [0.0, -1.0, 1.5], [-2.0, 1.0, 1.0]]


def test_nt_xent_golden_simclr_formula():
    # SimCLR's NT-Xent (Chen et al. 2020, eq. 1), the loss of SiT 2021: for the 2B rows z = [z1; z2],
    # l(i) = -log( exp(cos(z_i, z_pos(i)) / tau) / sum_{k != i} exp(cos(z_i, z_k) / tau) ), averaged over 2B rows.
    z = Z1 + Z2
    n = len(z)
    for tau in (0.5, 0.1):
        total = 0.0
        for i in range(n):
            pos = (i + n // 2) % n
            numerator = math.exp(_cosine(z[i], z[pos]) / tau)
            denominator = 0.0
            for k in range(n):
                if k != i:
                    denominator += math.exp(_cosine(z[i], z[k]) / tau)
            total += -math.log(numerator / denominator)
        expected = total / n
        assert nt_xent(torch.tensor(Z1), torch.tensor(Z2), tau).item() == pytest.approx(expected, rel=1e-5)


def _info_nce_by_hand(query, key, tau):
    total = 0.0
    for i in range(len(query)):
        logits = [_cosine(query[i], key[j]) / tau for j in range(len(key))]
        total += -math.log(math.exp(logits[i]) / sum(math.exp(v) for v in logits))
    return total / len(query)


def test_masked_info_nce_golden_authors_scaling():
    # The authors' 2022 contrastive term: ctr(q, k) = CE(q k^T / tau, i -> i) * 2 tau per direction, the two
    # directions (student view 1 vs teacher view 2, student view 2 vs teacher view 1) summed.
    s1, s2, t1, t2 = Z1, Z2, [row[::-1] for row in Z2], [row[::-1] for row in Z1]
    tau = 0.2
    forward, backward = _info_nce_by_hand(s1, t2, tau), _info_nce_by_hand(s2, t1, tau)
    authors = 2 * tau * forward + 2 * tau * backward
    tensors = [torch.tensor(x) for x in (s1, s2, t1, t2)]
    assert symmetric_info_nce(*tensors, tau, scale="two_tau_sum").item() == pytest.approx(authors, rel=1e-5)
    mean = symmetric_info_nce(*tensors, tau, scale="mean").item()
    assert mean == pytest.approx(0.5 * (forward + backward), rel=1e-5)
    assert authors == pytest.approx(0.8 * mean, rel=1e-5)  # 4 tau = 0.8 at tau 0.2 (docs/methods.md 3.4)
    with pytest.raises(VitsslError, match="scale"):
        symmetric_info_nce(*tensors, tau, scale="sum")


def test_uncertainty_weighting_golden_kendall_formula():
    # Kendall et al. 2018 as SiT combines its tasks: L = sum_t exp(-a_t s_t) L_t + 0.5 s_t, a_t = 1 for the
    # cross-entropy-type losses and 0.5 for the L1 (Laplace likelihood), every s_t a learned scalar.
    scales = {"rot": 1.0, "con": 1.0, "rec": 0.5}
    s_values = {"rot": -0.4, "con": 0.9, "rec": 2.0}
    loss_values = {"rot": 1.386, "con": 5.2, "rec": 0.45}
    weighting = UncertaintyWeighting(scales, init=0.0)
    with torch.no_grad():
        for name, value in s_values.items():
            weighting.log_vars[name].fill_(value)
    expected = 0.0
    for name in ("rot", "con", "rec"):
        expected += math.exp(-scales[name] * s_values[name]) * loss_values[name] + 0.5 * s_values[name]
    total = weighting({k: torch.tensor(v) for k, v in loss_values.items()})
    assert total.item() == pytest.approx(expected, rel=1e-6)
    # At init 1 (SiT's) every cross-entropy-type task has weight e^-1 and the L1 e^-0.5.
    fresh = UncertaintyWeighting(scales, init=1.0).weights()
    assert fresh["con"].item() == pytest.approx(math.exp(-1)) and fresh["rec"].item() == pytest.approx(math.exp(-0.5))


def test_negatives_per_process_ignore_the_other_processes_keys(monkeypatch):
    """Two processes simulated: the gathered keys hold a copy of this process's unit vectors. Global negatives see
    them (a query then has its positive e^2, two copies of itself e^2 and four orthogonal keys 1 in the sum:
    log(3 + 4 e^-2)); per-process negatives are the one-process loss log(1 + 2 e^-2), the authors' 2021 NT-Xent
    on each GPU."""
    import vitssl.methods.sit.losses as sit_losses

    monkeypatch.setattr(sit_losses, "gather_with_grad", lambda x: torch.cat([x, x.detach().clone()]))
    monkeypatch.setattr(sit_losses, "rank", lambda: 0)
    e = torch.eye(2)
    assert nt_xent(e, e, 0.5, "global").item() == pytest.approx(math.log(3 + 4 * math.exp(-2)), abs=1e-6)
    assert nt_xent(e, e, 0.5, "per_process").item() == pytest.approx(math.log(1 + 2 * math.exp(-2)), abs=1e-6)
    # InfoNCE: the positive e^5 against one orthogonal key locally, plus a copy e^5 and another 1 globally
    assert info_nce(e, e, 0.2, "per_process").item() == pytest.approx(math.log(1 + math.exp(-5)), abs=1e-6)
    assert info_nce(e, e, 0.2, "global").item() == pytest.approx(math.log(2 + 2 * math.exp(-5)), abs=1e-6)
    with pytest.raises(VitsslError, match="negatives"):
        nt_xent(e, e, 0.5, "everywhere")  # type: ignore[arg-type]
