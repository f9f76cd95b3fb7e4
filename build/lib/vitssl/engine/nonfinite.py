"""Non-finite losses: the step is skipped (the weights, the optimiser, the teacher and the centres keep their
values) and too many in a row stop the run.

Two ways to decide, set by ``train.nonfinite_check``. "sync" reads the loss on the host every step: exact and
free on a CPU, but on a GPU each read waits for the queued work, so the host stops running ahead of the device.
"device" keeps the decision on the device: the step's updates are gated by a boolean tensor (fused AdamW's
``found_inf``, a momentum of 1 for the teacher, ``where`` for the centres), and the counts below are read only
when a step is logged.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vitssl.errors import VitsslError

MODES = ("auto", "sync", "device")


def decides_on_device(mode: str, device: torch.device) -> bool:
    """Whether ``train.nonfinite_check=mode`` keeps the decision on the device ("auto": on CUDA)."""
    if mode not in MODES:
        raise VitsslError(f"train.nonfinite_check must be one of {', '.join(MODES)}, not {mode!r}")
    return mode == "device" or (mode == "auto" and device.type == "cuda")


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
