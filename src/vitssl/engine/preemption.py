"""Pre-emption: SIGTERM (how SLURM and cloud schedulers stop a job) and SIGINT (Ctrl-C) end the current step,
then the run is checkpointed and stops with one line saying how to resume.

The handlers only set a flag; the training loop looks at it between steps. Under torchrun every process asks
every other whether one of them was signalled (a one-number all-reduce), so all of them stop after the same
step and none is left waiting in a collective. A second Ctrl-C stops at once (the last checkpoint remains).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import torch

from vitssl import distributed as dist

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """While active (a context manager), remembers the first SIGTERM or SIGINT instead of dying on it."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # pressed twice: the user does not want to wait for the step to end
        self.received = self.received or signum

    def requested(self, device: torch.device) -> int | None:
        """The signal to stop for, agreed by every process (the largest signal number any of them received)."""
        if not dist.is_distributed():
            return self.received
        flag = torch.tensor([float(self.received or 0)], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item()) or None
