"""StepOutput.assemble: named, weighted loss terms added in order, logged unweighted, no dict changed."""

from __future__ import annotations

import torch

from vitssl.losses.koleo import koleo_loss, koleo_term
from vitssl.losses.terms import WeightedTerm
from vitssl.methods import StepOutput


def test_terms_add_their_weighted_value_and_log_the_unweighted_one():
    loss, value = torch.tensor(1.0), torch.tensor(3.0, requires_grad=True)
    metrics = {"other": 2.0}
    out = StepOutput.assemble(loss, [WeightedTerm("reg", value, 0.5), None], metrics, log=True)
    assert out.loss.item() == 2.5  # 1 + 0.5 x 3
    assert out.metrics == {"other": 2.0, "reg": 3.0} and not out.metrics["reg"].requires_grad
    assert metrics == {"other": 2.0}  # the caller's dict is left alone
    out.loss.backward()
    assert value.grad.item() == 0.5


def test_terms_are_not_logged_on_unlogged_steps_and_no_term_is_the_plain_loss():
    loss = torch.tensor(1.0)
    out = StepOutput.assemble(loss, [WeightedTerm("reg", torch.tensor(3.0), 0.5)], log=False)
    assert out.loss.item() == 2.5 and out.metrics == {}
    assert StepOutput.assemble(loss).loss is loss


def test_koleo_term_is_the_mean_over_views_and_off_at_weight_zero():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    term = koleo_term([a, b], 0.25)
    assert term is not None and term.name == "koleo" and term.weight == 0.25
    torch.testing.assert_close(term.value, (koleo_loss(a) + koleo_loss(b)) / 2)
    assert koleo_term([a, b], 0.0) is None
