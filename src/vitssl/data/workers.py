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

import torch

__all__ = ["init_worker"]


def init_worker(worker_id: int) -> None:
    """``worker_init_fn`` of every loader: ignore stop signals, use one intra-op thread."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Loader workers are processes already; letting each spawn one intra-op thread per core oversubscribes the
    # CPU that the main process needs for the model.
    torch.set_num_threads(1)
