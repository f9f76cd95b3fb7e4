"""train.budget_minutes (engine/budget.py): the run measures its pace and ends, schedules included, in time."""

import json

import pytest
import torch

from conftest import TINY_OVERRIDES
from vitssl.api import build_trainer
from vitssl.config import load_config
from vitssl.engine import budget as budget_module
from vitssl.engine.budget import PACE_STEPS, SETTLE_STEPS, TimeBudget


def tiny_cfg(root, out, *extra):
    return load_config(
        None, [f"data.train={root}", *TINY_OVERRIDES, "train.log_every=1", f"train.out_dir={out}", *extra]
    )


class FakeClock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_steps_that_fit_are_decided_once_from_the_measured_pace(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(budget_module.time, "perf_counter", clock)
    budget = TimeBudget(minutes=1.0)
    budget.start(0)
    decided = []
    for step in range(1, SETTLE_STEPS + PACE_STEPS + 3):
        clock.now += 1.0  # one second per step
        decided.append(budget.after_step(step, 1000, torch.device("cpu")))
    fitted = [d for d in decided if d is not None]
    assert len(fitted) == 1 and decided.index(fitted[0]) == SETTLE_STEPS + PACE_STEPS - 1
    # decided after step 13, 13 s into the 60 s budget, at 1 s per step: 47 more steps fit
    assert fitted[0] == 60


@pytest.mark.parametrize("planned, expected", [(1000, 107), (80, 80)])
def test_the_length_is_decided_again_once_the_slow_first_steps_have_passed(monkeypatch, planned, expected):
    """1 s per step for the first 13 steps, then 0.5 s (as when the lazy cache has been filled): the first decision
    (60 steps) is measured again over steps 22-29 (20-35 % of the 47 remaining) and lengthened, up to ``planned``."""
    clock = FakeClock()
    monkeypatch.setattr(budget_module.time, "perf_counter", clock)
    budget = TimeBudget(minutes=1.0)
    budget.start(0)
    total, decisions = 1000, {}
    for step in range(1, 40):
        clock.now += 1.0 if step <= SETTLE_STEPS + PACE_STEPS else 0.5
        fitted = budget.after_step(step, total, torch.device("cpu"), planned)
        if fitted is not None:
            decisions[step] = total = fitted
    # at step 29, 21 s into the budget, at 0.5 s per step: 78 more steps fit
    assert decisions == {13: 60, 29: expected} and budget.refined


def test_no_budget_decides_nothing_and_a_long_budget_keeps_the_epochs():
    assert TimeBudget(None).after_step(50, 100, torch.device("cpu")) is None
    long = TimeBudget(minutes=1e6)
    long.start(0)
    assert [long.after_step(s, 100, torch.device("cpu")) for s in range(1, 14)][-1] == 100


@pytest.mark.parametrize("minutes", [1e-4])
def test_a_budgeted_run_ends_its_schedule_in_time_and_resumes_as_finished(tiny_image_folder, tmp_path, capsys, minutes):
    cfg = tiny_cfg(
        tiny_image_folder, tmp_path / "r", "optim.epochs=20", "optim.warmup_epochs=1", f"train.budget_minutes={minutes}"
    )
    result = build_trainer(cfg).fit()
    shortest = SETTLE_STEPS + PACE_STEPS + 1
    assert result.steps == shortest  # 120 steps asked; the budget (6 ms) fits none after the measured ones
    assert f"{shortest} steps fit" in capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    last_lr = [r["lr"] for r in records if "lr" in r][-1]
    peak = cfg.optim.lr * cfg.data.batch_size / 256
    assert last_lr - cfg.optim.min_lr < 0.1 * (peak - cfg.optim.min_lr)  # unbudgeted: near the peak here
    again = build_trainer(cfg).fit()
    assert again.already_finished and again.steps == shortest
