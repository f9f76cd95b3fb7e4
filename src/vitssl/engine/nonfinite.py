"""Non-finite losses: the step is skipped (the weights, the optimiser, the teacher and the centres keep their
values) and too many in a row stop the run.

Two ways to decide, set by ``train.nonfinite_check`` and chosen once, by :func:`build_guard`. :class:`HostGuard`
("sync") reads the loss on the host every step: exact and free on a CPU, but on a GPU each read waits for the
queued work, so the host stops running ahead of the device. :class:`DeviceGuard` ("device") keeps the decision
on the device: the step's updates are gated by a boolean tensor (fused AdamW's ``found_inf``, a momentum of 1 for
the teacher, ``where`` for the centres), and the counts are read only when a step is logged.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from vitssl.errors import VitsslError
from vitssl.schedules import StepState

MODES = ("auto", "sync", "device")


def decides_on_device(mode: str, device: torch.device) -> bool:
    """Whether ``train.nonfinite_check=mode`` keeps the decision on the device ("auto": on CUDA)."""
    if mode not in MODES:
        raise VitsslError(f"train.nonfinite_check must be one of {', '.join(MODES)}, not {mode!r}")
    return mode == "device" or (mode == "auto" and device.type == "cuda")


class NonFiniteGuard(ABC):
    """Decides whether a step's update is applied and counts the skipped ones.

    Attributes:
        skipped_steps: Skipped steps of the whole run, as far as the host knows.
        in_a_row: Skipped steps in a row up to the latest step the host knows of.
        fused: Whether the optimiser must be fused (its ``found_inf`` is how a device skip reaches AdamW).
        lagged: Whether the stop-signal agreement may answer one step late (no host wait between steps).
    """

    fused = False
    lagged = False

    def __init__(self) -> None:
        self.skipped_steps = 0
        self.in_a_row = 0

    @abstractmethod
    def admit(self, loss: Tensor, state: StepState) -> bool:
        """Whether the update goes on from ``loss`` (the mean over processes). False: the caller drops it."""

    @abstractmethod
    def read_loss(self, loss: Tensor, log: bool) -> float | None:
        """The loss as a float when this step may read it on the host (``log``: a logged step), else None."""

    @abstractmethod
    def refresh(self, log: bool = True) -> bool:
        """Bring the counts up to date when this step may read the device (``log``); whether they are current."""


class HostGuard(NonFiniteGuard):
    """ "sync": every loss is read on the host and a non-finite one is skipped before the update starts."""

    def admit(self, loss: Tensor, state: StepState) -> bool:
        if math.isfinite(loss.item()):
            self.in_a_row = 0
            return True
        self.skipped_steps += 1
        self.in_a_row += 1
        return False

    def read_loss(self, loss: Tensor, log: bool) -> float | None:
        return loss.item()  # already waited for by admit: free

    def refresh(self, log: bool = True) -> bool:
        return True


class DeviceGuard(NonFiniteGuard):
    """ "device": every update is applied through ``state.applied``, a device flag; nothing is read in between.

    Args:
        device: Where the loss lives.
    """

    fused = True
    lagged = True

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.counter = DeviceSkipCounter(device)

    def admit(self, loss: Tensor, state: StepState) -> bool:
        state.applied = torch.isfinite(loss)
        self.counter.add(state.applied)
        return True

    def read_loss(self, loss: Tensor, log: bool) -> float | None:
        return loss.item() if log else None

    def refresh(self, log: bool = True) -> bool:
        if log:
            skipped, self.in_a_row = self.counter.read()
            self.skipped_steps += skipped
        return log


def build_guard(mode: str, device: torch.device) -> NonFiniteGuard:
    """The guard for ``train.nonfinite_check=mode`` on ``device``."""
    return DeviceGuard(device) if decides_on_device(mode, device) else HostGuard()


class DeviceSkipCounter:
    """Counts skipped steps, and the current run of them, in device tensors; :meth:`read` is the only host read.

    Args:
        device: Where the loss lives.
    """

    def __init__(self, device: torch.device) -> None:
        self._total = torch.zeros((), dtype=torch.long, device=device)
        self._in_a_row = torch.zeros((), dtype=torch.long, device=device)

    def add(self, applied: Tensor) -> None:
        """Count one step; ``applied`` is False when it was skipped."""
        skipped = (~applied).long()
        self._total += skipped
        self._in_a_row.add_(skipped).mul_(skipped)  # a finite step ends the run of skipped ones

    def read(self) -> tuple[int, int]:
        """(skipped steps since the last read, skipped steps in a row now); one host synchronisation."""
        total, in_a_row = torch.stack([self._total, self._in_a_row]).tolist()
        self._total.zero_()
        return int(total), int(in_a_row)
