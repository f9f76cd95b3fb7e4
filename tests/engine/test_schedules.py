import itertools
import math

import pytest

from vitssl.schedules import StepState, cosine_schedule, linear_warmup


def test_cosine_schedule_known_values():
    # 10 warm-up steps from 0 to 1, then cosine to 0.1 over 90 steps.
    assert cosine_schedule(0, 100, 1.0, 0.1, warmup_steps=10) == 0.0
    assert cosine_schedule(5, 100, 1.0, 0.1, warmup_steps=10) == pytest.approx(0.5)
    assert cosine_schedule(10, 100, 1.0, 0.1, warmup_steps=10) == pytest.approx(1.0)
    assert cosine_schedule(55, 100, 1.0, 0.1, warmup_steps=10) == pytest.approx(0.55)  # half way: mean
    assert cosine_schedule(100, 100, 1.0, 0.1, warmup_steps=10) == pytest.approx(0.1)
    quarter = 0.1 + 0.45 * (1 + math.cos(math.pi * 0.25))
    assert cosine_schedule(10 + 22.5, 100, 1.0, 0.1, warmup_steps=10) == pytest.approx(quarter)


def test_teacher_momentum_schedule_rises_to_one():
    values = [cosine_schedule(s, 50, 0.996, 1.0) for s in range(51)]
    assert values[0] == pytest.approx(0.996) and values[-1] == pytest.approx(1.0)
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(values))


def test_linear_warmup_then_constant():
    assert linear_warmup(0, 30, 0.04, 0.07) == pytest.approx(0.04)
    assert linear_warmup(15, 30, 0.04, 0.07) == pytest.approx(0.055)
    assert linear_warmup(30, 30, 0.04, 0.07) == pytest.approx(0.07)
    assert linear_warmup(1000, 30, 0.04, 0.07) == pytest.approx(0.07)
    assert linear_warmup(3, 0, 0.04, 0.07) == pytest.approx(0.07)


def test_step_state_epochs():
    state = StepState(step=25, steps_per_epoch=10, total_steps=100)
    assert state.epoch == 2 and state.epoch_float == pytest.approx(2.5)
