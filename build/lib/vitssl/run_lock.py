"""One run per run folder: a lock held for as long as a run trains, naming its holder.

Two runs in one folder (a requeued job starting while the old one still lives, the same command started twice)
would both write ``last.pt`` and interleave their metrics. The training process (rank 0 under torchrun) holds
an exclusive ``flock`` on ``RUN/.vitssl.lock`` and writes its host, pid and start time into it; a second run is
refused in one line naming that holder, and so is a command that reads the folder's checkpoint while it is
being trained (a checkpoint file passed by name can still be read: it is written atomically).

The operating system drops the lock when its process dies, however it dies (SIGKILL, out of memory, a crashed
node once the shared file system's lease expires), so a lock left by a killed run is stale by construction: the
next run takes it over and rewrites the holder. The file's contents only name the holder; they never decide.
On a file system without ``flock`` the contents decide: a holder on this host whose process is gone is stale.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from vitssl.errors import VitsslError

__all__ = ["LOCK", "RunInUse", "RunLock", "check_not_in_use", "holder_of"]

LOCK = ".vitssl.lock"
_UNSUPPORTED = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}


class RunInUse(VitsslError):
    """The run folder is held by a live run."""


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process"
    started = holder.get("started")
    since = f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}" if started else ""
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}{since}"


def holder_of(run_dir: Path) -> dict[str, Any] | None:
    """What the lock file says of its holder (host, pid, started), or None when there is none to read."""
    try:
        holder = json.loads((Path(run_dir) / LOCK).read_text() or "null")
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _alive_here(holder: dict[str, Any] | None) -> bool:
    """Whether ``holder`` is a live process of this host (the check of file systems without ``flock``)."""
    if not holder or holder.get("host") != socket.gethostname():
        return holder is not None  # another host's process cannot be checked: assume it lives
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


class RunLock:
    """The exclusive lock of one run folder (a context manager; acquire once, release once).

    Args:
        run_dir: The run folder (created by the caller).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`RunInUse` naming the live holder."""
        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._in_use() from None
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                os.close(fd)
                raise
            if _alive_here(holder_of(self.run_dir)):  # no flock here: the holder's record decides
                os.close(fd)
                raise self._in_use(unsupported=True) from None
        self._fd = fd
        self._write_holder()
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)  # nothing names a holder that is gone
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _write_holder(self) -> None:
        record = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "argv": sys.argv}
        data = json.dumps(record).encode()
        assert self._fd is not None
        with contextlib.suppress(OSError):  # the record only names the holder; the lock itself is taken
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)

    def _in_use(self, unsupported: bool = False) -> RunInUse:
        holder = _describe(holder_of(self.run_dir))
        extra = f"; if that run is gone, delete {self.path}" if unsupported else ""
        return RunInUse(
            f"{self.run_dir} is in use by another run ({holder}); wait for it to end or stop it, or train in "
            f"another folder (train.out_dir, or --fresh){extra}"
        )


def check_not_in_use(run_dir: Path) -> None:
    """Refuse, in one line naming the holder, to read the checkpoint of a run folder that a live run trains."""
    path = Path(run_dir) / LOCK
    if not path.exists():
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # unreadable lock: nothing to check against
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        from vitssl.checkpoints import LAST  # here: checkpoints imports this module

        raise RunInUse(
            f"{run_dir} is being trained by a live run ({_describe(holder_of(run_dir))}); wait for it to end, or "
            f"pass {Path(run_dir) / LAST} to read its latest checkpoint now"
        ) from None
    except OSError:
        return  # no flock on this file system: readers are not held back
    finally:
        os.close(fd)
