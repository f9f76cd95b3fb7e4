"""Failed writes as one line that says why, where and what survived.

A full disk does not fail the same way in every writer: Python's ``write`` raises ``OSError(ENOSPC)``, a file-size
limit (``ulimit -f``) raises ``OSError(EFBIG)``, and ``torch.save`` reports either as ``RuntimeError: [enforce
fail at inline_container.cc] unexpected pos ...`` with the ``OSError`` only in its context. Whatever the writer
raised, :func:`write_failure` finds the cause and turns it into a :class:`WriteFailed` naming the file, the
reason and the free space of its folder.
"""

from __future__ import annotations

import errno
import resource
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vitssl.errors import VitsslError

__all__ = ["RESUME_AFTER_FAILED_WRITE", "WriteFailed", "free_space", "guard_write", "write_failure"]

RESUME_AFTER_FAILED_WRITE = (
    "the last checkpoint is intact: free some space (or fix the folder) and re-run the same command to resume"
)
"""What a training run says after a failed write of its record: nothing is lost, and how to go on."""

_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


class WriteFailed(VitsslError):
    """A file of a run (checkpoint, metrics, picture, ...) could not be written; the message says why and where."""


def free_space(path: Path) -> str:
    """Free space of the file system holding ``path`` (its nearest existing folder), e.g. "12.40 GiB", "0.8 MiB"."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "unknown space"
    return f"{free / 2**30:.2f} GiB" if free >= 2**30 else f"{free / 2**20:.1f} MiB"


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: itself, or one in its chain of causes and contexts (torch wraps them)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno is not None:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _file_size_limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _reason(exc: BaseException) -> str:
    os_error = _os_error(exc)
    limit = _file_size_limit()
    if os_error is not None and os_error.errno == errno.EFBIG or (os_error is None and limit is not None):
        where = f" of {limit / 2**20:.1f} MiB" if limit is not None else ""
        return f"the file is larger than the file-size limit{where} (`ulimit -f`)"
    if os_error is not None:
        return _REASONS.get(os_error.errno or 0, os_error.strerror or type(os_error).__name__)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def write_failure(what: str, path: Path, exc: BaseException, then: str) -> WriteFailed:
    """The one-line error for a failed write of ``what`` at ``path``: the reason found in ``exc``, the free
    space of its folder, and ``then`` (what is intact and how to go on)."""
    path = Path(path)
    return WriteFailed(
        f"could not write {what} {path} ({_reason(exc)}; {free_space(path)} free in {path.parent}); {then}"
    )


@contextmanager
def guard_write(what: str, path: Path, then: str) -> Iterator[None]:
    """Turn any exception of the writes inside into :func:`write_failure`'s one line (interrupts pass through)."""
    try:
        yield
    except WriteFailed:
        raise
    except Exception as exc:
        raise write_failure(what, path, exc, then) from None
