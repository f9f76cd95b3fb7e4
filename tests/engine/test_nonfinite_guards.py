"""The two non-finite guards on their own: the host guard drops a non-finite step, the device guard lets every
step through with a device flag and counts the skipped ones where the host reads them only when allowed."""

import pytest
import torch

from vitssl.engine.nonfinite import DeviceGuard, HostGuard, build_guard
from vitssl.errors import VitsslError
from vitssl.schedules import StepState

NAN, ONE = torch.tensor(float("nan")), torch.tensor(1.0)


def state():
    return StepState(step=0, steps_per_epoch=1, total_steps=1)


def test_the_host_guard_skips_a_non_finite_step_and_counts_runs():
    guard = HostGuard()
    assert not guard.fused and not guard.lagged
    assert guard.admit(ONE, state())
    s = state()
    assert not guard.admit(NAN, s)
    assert s.applied is None  # nothing gated on the device: the caller drops the update
    assert not guard.admit(torch.tensor(float("inf")), state())
    assert (guard.skipped_steps, guard.in_a_row) == (2, 2)
    assert guard.admit(ONE, state())
    assert (guard.skipped_steps, guard.in_a_row) == (2, 0)  # a finite step ends the run of skipped ones
    assert guard.refresh(log=False)  # the host counts are always current
    assert guard.read_loss(ONE, log=False) == 1.0  # already read: every step has its loss


def test_the_device_guard_gates_on_the_device_and_counts_skips():
    guard = DeviceGuard(torch.device("cpu"))
    assert guard.fused and guard.lagged
    flags = []
    for loss in (ONE, NAN, NAN, ONE, NAN):
        s = state()
        assert guard.admit(loss, s)  # the update always runs, gated by its flag
        flags.append(bool(s.applied))
    assert flags == [True, False, False, True, False]
    assert not guard.refresh(log=False)  # not a logged step: nothing is read
    assert guard.skipped_steps == 0
    assert guard.read_loss(ONE, log=False) is None
    assert guard.refresh(log=True)
    assert (guard.skipped_steps, guard.in_a_row) == (3, 1)
    guard.admit(NAN, state())
    assert guard.refresh()
    assert (guard.skipped_steps, guard.in_a_row) == (4, 2)  # totals accumulate; the run goes on across reads
    assert guard.read_loss(ONE, log=True) == 1.0


def test_the_guard_is_chosen_once_from_the_mode_and_the_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert isinstance(build_guard("auto", cpu), HostGuard)
    assert isinstance(build_guard("sync", cpu), HostGuard)
    assert isinstance(build_guard("device", cpu), DeviceGuard)
    assert isinstance(build_guard("sync", cuda), HostGuard)
    with pytest.raises(VitsslError, match="train.nonfinite_check must be one of"):
        build_guard("never", cpu)
