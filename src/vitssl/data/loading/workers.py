"""What every data-loader worker process does first.

A scheduler stops a job by signalling its whole process group: SLURM's pre-emption and ``scancel``, ``docker
stop`` of a container running a shell, Ctrl-C in a terminal. Loader workers are in that group. Left with the
default action, they die on SIGTERM before the main process has finished its step, and the main process then
fails with "DataLoader worker ... exited unexpectedly" instead of saving a checkpoint. So workers ignore
SIGINT and SIGTERM: the main process decides (it finishes the step, saves and exits), and its loader shuts the
workers down as usual. A worker still stops when its main process is gone (the loader's watchdog) or on SIGKILL.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["init_worker", "stop_signals_held"]


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def stop_signals_held() -> Iterator[None]:
    """Hold back SIGINT and SIGTERM while loader workers are started (``iter(loader)``): a worker inherits the
    mask, so a signal to the process group that arrives before its :func:`init_worker` waits until that worker
    ignores it, instead of reaching a worker that has not yet decided. The main process gets its own signal as
    soon as the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def init_worker(worker_id: int) -> None:
    """``worker_init_fn`` of every loader: ignore stop signals, use one intra-op thread."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # held back by stop_signals_held: now ignored
    # Loader workers are processes already; letting each spawn one intra-op thread per core oversubscribes the
    # CPU that the main process needs for the model.
    torch.set_num_threads(1)
