import math

import pytest
import torch

from vitssl.losses.koleo import koleo_loss


def test_koleo_matches_a_hand_computed_value():
    # three unit vectors at 0, 90 and 180 degrees: every nearest neighbour is sqrt(2) away
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert koleo_loss(x).item() == pytest.approx(-0.5 * math.log(2), abs=1e-6)
    # the features are normalised first: lengths do not matter
    assert koleo_loss(x * torch.tensor([[3.0], [0.5], [7.0]])).item() == pytest.approx(-0.5 * math.log(2), abs=1e-6)


def test_koleo_uses_each_rows_nearest_neighbour():
    # 0 and 10 degrees are close, 180 is far: -(log d01 + log d01 + log d(180, 10 deg)) / 3
    angles = torch.tensor([0.0, 10.0, 180.0]) * math.pi / 180
    x = torch.stack([angles.cos(), angles.sin()], dim=1)
    d01 = 2 * math.sin(math.radians(5))
    d2 = 2 * math.sin(math.radians(85))
    assert koleo_loss(x).item() == pytest.approx(-(2 * math.log(d01) + math.log(d2)) / 3, abs=1e-5)


def test_koleo_gradient_spreads_the_features():
    torch.manual_seed(0)
    x = (torch.randn(16, 8) * 0.05 + torch.ones(8)).requires_grad_()  # a tight cluster
    before = koleo_loss(x).item()
    koleo_loss(x).backward()
    with torch.no_grad():
        x -= 0.05 * x.grad
    assert koleo_loss(x).item() < before


def test_identical_rows_give_a_finite_loss_and_bad_shapes_a_clear_error():
    assert math.isfinite(koleo_loss(torch.ones(4, 3)).item())
    with pytest.raises(ValueError, match="n >= 2"):
        koleo_loss(torch.ones(1, 3))
