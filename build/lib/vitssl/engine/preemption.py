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
        self._pending: _PendingFlag | None = None

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

    def requested(self, device: torch.device, lagged: bool = False) -> int | None:
        """The signal to stop for, agreed by every process (the largest signal number any of them received).

        Args:
            lagged: Answer one call late (every process still agrees, one step later): this call's all-reduce
                runs in the background and is read at the next call, by when the work queued before it is done,
                so the host never waits for the device's queue to drain (``train.nonfinite_check=device``).
        """
        if not dist.is_distributed():
            return self.received
        flag = torch.tensor([float(self.received or 0)], device=device)
        if not lagged:
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            return int(flag.item()) or None
        work = torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, async_op=True)
        previous, self._pending = self._pending, _PendingFlag(work, flag)
        return previous.read() if previous is not None else None

    def drain(self) -> None:
        """Finish a lagged all-reduce still in flight (every process issued it; none may be left behind)."""
        if self._pending is not None:
            self._pending.read()
            self._pending = None


class _PendingFlag:
    """An all-reduced stop flag in flight. On CUDA it is copied to pinned host memory behind an event, so reading
    it waits for that event only, not for everything queued since."""

    def __init__(self, work: torch.distributed.Work, flag: torch.Tensor) -> None:
        self.work, self.flag, self.event = work, flag, None
        if flag.is_cuda:
            work.wait()  # on NCCL: the current stream waits for the collective; the host does not
            host = torch.empty_like(flag, device="cpu", pin_memory=True)
            host.copy_(flag, non_blocking=True)
            self.flag, self.event = host, torch.cuda.Event()  # type: ignore[no-untyped-call]  # torch leaves Event() unannotated
            self.event.record()

    def read(self) -> int | None:
        if self.event is not None:
            self.event.synchronize()
        else:
            self.work.wait()
        return int(self.flag.item()) or None
