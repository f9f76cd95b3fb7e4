"""vitssl's messages go through the standard ``logging`` module, under the ``vitssl`` logger.

As a library, vitssl only emits records (a ``NullHandler`` keeps them silent until the application configures
logging, as the logging HOWTO advises for libraries). The ``vitssl`` command configures one handler on stderr that
prints ``vitssl: message`` (``vitssl: warning: message`` from warning level up), at a level set by ``-q`` / ``-v``.
Results a command is asked for (tables, lists) stay on stdout, so they can be piped; progress bars stay on stderr.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

LOGGER_NAME = "vitssl"
logger = logging.getLogger(LOGGER_NAME)
logger.addHandler(logging.NullHandler())


class _OneLine(logging.Formatter):
    """``vitssl: message``, with ``warning:`` / ``error:`` between them from warning level up."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"vitssl: error: {message}"
        if record.levelno >= logging.WARNING:
            return f"vitssl: warning: {message}"
        return f"vitssl: {message}"


class _Stderr(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is when a record arrives, so that a replaced
    stderr (a notebook's, a test's capture) receives the line instead of a stale, possibly closed, stream."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def get_logger(name: str | None = None) -> logging.Logger:
    """The ``vitssl`` logger, or its child ``vitssl.<name>``."""
    return logger.getChild(name) if name else logger


def configure(verbosity: int = 0, stream: TextIO | None = None) -> None:
    """Route vitssl's records to ``stream`` (stderr) as one line each; a second call replaces the first.

    Args:
        verbosity: -1 for warnings and errors only (``-q``), 0 for progress messages (the default), 1 for debug
            detail as well (``-v``).
        stream: Where to write; by default whatever ``sys.stderr`` is when each record arrives.
    """
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    for old in [h for h in logger.handlers if getattr(h, "_vitssl_cli", False)]:
        logger.removeHandler(old)
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.setFormatter(_OneLine())
    handler._vitssl_cli = True  # type: ignore[attr-defined]  # marks the handler this function owns
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # the command's own handler prints each record once, whatever the root logger does


def configure_unless_configured() -> None:
    """:func:`configure` for a Python caller who set up no logging (neither the root logger nor ``vitssl``'s):
    ``vitssl.pretrain`` in a notebook then says what it does, as the command does; an application's own logging
    set-up is left alone."""
    own = [h for h in logger.handlers if not isinstance(h, logging.NullHandler)]
    if not own and not logging.getLogger().handlers:
        configure(0)
