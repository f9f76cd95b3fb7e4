"""Unreadable inputs: one policy for every command that reads images, and the one line that reports them.

Policy ``"skip"`` (the default): an unreadable or empty image file is left out, or, where a fixed number of
samples is needed (training batches, shards), a readable neighbour's image stands in for it; each one is
counted and named, and the command ends with one summary line (:meth:`BadInputs.summary`). Policy
``"error"`` (``--strict``, ``data.on_bad_image=error``): the first one stops the command with a one-line error.

Loader workers are separate processes, so a dataset's own counters never reach the main process: datasets put
the entries of the inputs they passed over in each sample (``"bad_paths"``), batches carry them
(``Batch.bad_paths``), and the main process adds them to a :class:`BadInputs`. An entry is ``"PATH (reason)"``,
e.g. ``"a/x.jpg (empty file)"`` or ``"shards/train-000003.tar (torn at sample 17)"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO, TypeVar

from vitssl.data.images import UnreadableImageError
from vitssl.errors import VitsslError
from vitssl.log import logger

T = TypeVar("T")

__all__ = [
    "ERROR",
    "POLICIES",
    "SKIP",
    "BadInputs",
    "check_policy",
    "collecting",
    "entry",
    "file_reason",
    "is_shard_entry",
    "note",
    "summary_line",
    "tallied",
]

SKIP = "skip"
"""Leave an unreadable input out (or stand a readable one in for it), count it and report it at the end."""
ERROR = "error"
"""Stop with a one-line error at the first unreadable input."""
POLICIES: tuple[str, ...] = (SKIP, ERROR)

LISTED = 3
"""Entries a summary line names; the rest are counted only."""

STRICT_HINT = "pass --strict to stop at the first one"
"""The end of an evaluation command's summary line."""

_SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def check_policy(value: str, key: str) -> str:
    """``value`` when it is a policy, else a VitsslError naming ``key`` and the choices."""
    if value not in POLICIES:
        raise VitsslError(f"{key}={value!r} is not a policy for unreadable inputs; use one of: {', '.join(POLICIES)}")
    return value


def entry(path: str | os.PathLike[str], reason: str) -> str:
    """The entry of one unreadable input: ``"PATH (reason)"``."""
    return f"{os.fspath(path)} ({reason})"


def file_reason(path: str | os.PathLike[str]) -> str:
    """A short reason why an image file failed to decode: missing file, empty file, or cannot decode."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return "missing file"
    return "empty file" if size == 0 else "cannot decode"


def is_shard_entry(text: str) -> bool:
    """Whether an entry names a whole shard (a tar file) rather than one image."""
    path = text.rsplit(" (", 1)[0]
    return path.endswith(_SHARD_SUFFIXES)


def summary_line(count_images: int, count_shards: int, first: Iterable[str], hint: str) -> str:
    """``vitssl: skipped 2 unreadable images (first: a.jpg (empty file), b.png (cannot decode)); <hint>``."""
    parts = []
    if count_images:
        parts.append(f"{count_images} unreadable image{'s' if count_images != 1 else ''}")
    if count_shards:
        parts.append(f"{count_shards} torn or unreadable shard{'s' if count_shards != 1 else ''}")
    named = ", ".join(first)
    return f"vitssl: skipped {' and '.join(parts)} (first: {named}); {hint}"


class BadInputs:
    """A tally of unreadable inputs: how many distinct ones, and the first few entries in the order met.

    The same input met again (in a later epoch, by another worker, as the stand-in source of several samples)
    counts once: entries are told apart by their text.

    Args:
        listed: How many entries :attr:`first` keeps.
        strict: Raise UnreadableImageError (one line) at the first entry instead of counting it: ``--strict``.
            Checking in the main process, as batches arrive, keeps the error one line however many loader
            workers there are (an exception raised in a worker reaches the main process wrapped in its traceback).

    Attributes:
        listed, strict: As given.
        first: The first ``listed`` distinct entries.
    """

    def __init__(self, listed: int = LISTED, strict: bool = False) -> None:
        self.listed = listed
        self.strict = strict
        self.first: list[str] = []
        self._seen: set[str] = set()
        self._shards = 0

    def add(self, entries: str | Iterable[str]) -> None:
        """Count one entry, or every entry of an iterable (a batch's ``bad_paths``), each distinct one once."""
        for text in (entries,) if isinstance(entries, str) else entries:
            if text in self._seen:
                continue
            if self.strict:
                raise UnreadableImageError(
                    f"unreadable input {text}; delete or replace it, or leave out --strict to skip it"
                )
            self._seen.add(text)
            self._shards += is_shard_entry(text)
            if len(self.first) < self.listed:
                self.first.append(text)

    def merge(self, other: BadInputs) -> None:
        """Add another tally's entries (e.g. one per network or per split of a command)."""
        self.add(other.entries())

    def entries(self) -> list[str]:
        """Every distinct entry, the first ones first."""
        rest = sorted(self._seen.difference(self.first))
        return [*self.first, *rest]

    @property
    def count(self) -> int:
        """Distinct unreadable inputs, images and shards together."""
        return len(self._seen)

    @property
    def bad_shards(self) -> int:
        """Distinct torn or unreadable shards."""
        return self._shards

    @property
    def bad_images(self) -> int:
        """Distinct unreadable images (files, or samples inside a shard)."""
        return self.count - self._shards

    def summary(self, hint: str = STRICT_HINT, training: bool = False) -> str | None:
        """The summary line, or None when nothing was skipped.

        Args:
            hint: How to stop at the first one instead (an evaluation command's ``--strict``).
            training: Name the config keys instead: ``data.on_bad_image=error`` and/or ``data.on_bad_shard=error``.
        """
        if not self.count:
            return None
        if training:
            keys = [
                key for key, n in (("data.on_bad_image", self.bad_images), ("data.on_bad_shard", self._shards)) if n
            ]
            hint = f"set {' and '.join(f'{key}=error' for key in keys)} to stop at the first one"
        return summary_line(self.bad_images, self._shards, self.first, hint)

    def report(self, hint: str = STRICT_HINT, training: bool = False, file: TextIO | None = None) -> None:
        """Say :meth:`summary` when anything was skipped: a warning of the ``vitssl`` logger, or a line written to
        ``file`` when one is given."""
        line = self.summary(hint, training)
        if line is None:
            return
        if file is not None:
            print(line, file=file)
        else:
            logger.warning(line.removeprefix("vitssl: "))


_ACTIVE: list[BadInputs] = []


@contextmanager
def collecting(strict: bool = False) -> Iterator[BadInputs]:
    """Collect what :func:`note` and :func:`tallied` report while the block runs, into a new :class:`BadInputs`.

    A command wraps its work in this and prints the tally's summary after it, so that the evaluation code it calls
    reports unreadable inputs without a tally being passed through every function.
    """
    tally = BadInputs(strict=strict)
    _ACTIVE.append(tally)
    try:
        yield tally
    finally:
        _ACTIVE.remove(tally)


def note(entries: str | Iterable[str]) -> None:
    """Report entries to every tally of an enclosing :func:`collecting` (none: nothing happens)."""
    entries = (entries,) if isinstance(entries, str) else tuple(entries)
    for tally in _ACTIVE:
        tally.add(entries)


def tallied(batches: Iterable[T]) -> Iterator[T]:
    """The batches, each one's ``bad_paths`` reported with :func:`note` as it arrives (a typed batch's attribute
    or a dict batch's key; batches without them pass as they are)."""
    for batch in batches:
        note(_bad_paths(batch))
        yield batch


def _bad_paths(batch: Any) -> tuple[str, ...]:
    if isinstance(batch, dict):
        return tuple(batch.get("bad_paths", ()))
    return tuple(getattr(batch, "bad_paths", ()))
