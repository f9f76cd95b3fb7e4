"""Checkpoints that cannot be lost: atomic writes, a checksum in every file, the previous good ones kept, and
loading that falls back to the newest good one. Every file loads with ``torch.load(weights_only=True)``.

A leaf module: the trainer writes checkpoints, the evaluation commands read them, and neither imports the other.

Layout of a run folder: ``last.pt`` is the newest checkpoint; when a new one is written, the previous
``last.pt`` becomes ``last-<step>.pt`` and only the newest ``keep - 1`` of those are kept.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from vitssl.errors import VitsslError
from vitssl.log import logger
from vitssl.run_lock import check_not_in_use
from vitssl.writing import guard_write

LAST = "last.pt"
NEW = ".last.pt.new"  # a complete new checkpoint, between its write and its rename to last.pt
_OLDER = re.compile(r"^last-(\d+)\.pt$")
_OLDER_GLOB = "last-*.pt"


def checksum(obj: Any) -> str:
    """SHA-256 over every tensor's bytes and every plain value of a checkpoint dict, in a fixed order."""
    digest = hashlib.sha256()

    def visit(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            digest.update(f"T{value.dtype}{tuple(value.shape)}".encode())
            t = value.detach().cpu().contiguous().reshape(-1)  # 0-d tensors cannot be viewed as bytes
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                if key != "checksum":
                    digest.update(f"K{key}".encode())
                    visit(value[key])
        elif isinstance(value, (list, tuple)):
            digest.update(f"L{len(value)}".encode())
            for item in value:
                visit(item)
        else:
            digest.update(f"V{value!r}".encode())

    visit(obj)
    return digest.hexdigest()


def save_atomic(obj: dict[str, Any], path: Path, name: Path | None = None, then: str | None = None) -> None:
    """Write to a temporary file in the same folder, flush it to disk, then rename over ``path``.

    A crash or a full disk at any moment leaves either the old file or the new one, never a torn file. A failed
    write, whatever the writer raised (``torch.save`` wraps a full disk in a ``RuntimeError``), is one line naming
    the folder and its free space; the old file is untouched and the temporary file removed.

    Args:
        name: The file to name in that line (default ``path``).
        then: What the line says is intact and how to go on.
    """
    then = then or "the previous file is intact: free some space (or fix the folder) and try again"
    tmp: str | None = None
    try:
        with guard_write("the checkpoint", name or path, then):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as handle:
                torch.save(obj, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            tmp = None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def save_checkpoint(state: dict[str, Any], run_dir: Path, keep: int = 2) -> Path:
    """Write ``state`` (with its checksum) as ``run_dir/last.pt``, keeping the previous ``keep - 1`` checkpoints."""
    path, new = run_dir / LAST, run_dir / NEW
    state = {**state, "checksum": checksum(state)}
    previous = _step_of(path) if keep > 1 and path.exists() else None
    if path.exists():
        then = f"the previous checkpoint {path} is intact: free some space (or fix the folder) and re-run the same "
        then += "command to resume"
    else:
        then = "no checkpoint was written before: free some space (or fix the folder) and re-run the same command"
    save_atomic(state, new, name=path, then=then)  # complete and on disk before anything is renamed
    if previous is not None:
        os.replace(path, run_dir / _older_name(previous))
    os.replace(new, path)
    for old in older_checkpoints(run_dir)[max(keep - 1, 0) :]:
        old.unlink(missing_ok=True)
    return path


def _step_of(path: Path) -> int | None:
    try:  # memory-mapped: only the small entries are read
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("step", 0))
    except Exception:  # a torn newest file is not worth keeping as "previous"
        return None


def _older_name(step: int) -> str:
    return f"last-{step:08d}.pt"


def older_checkpoints(run_dir: Path) -> list[Path]:
    """The kept older checkpoints of a run folder, newest first."""
    found = [(int(m.group(1)), p) for p in run_dir.glob(_OLDER_GLOB) if (m := _OLDER.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def holds_checkpoint(run_dir: Path) -> bool:
    """Whether a run folder holds a newest or an older checkpoint file."""
    return (run_dir / LAST).exists() or any(run_dir.glob(_OLDER_GLOB))


def run_dir_of(checkpoint: str | Path) -> Path:
    """The run folder of a run folder or of a checkpoint file inside one (the file's folder)."""
    path = Path(checkpoint)
    return path if path.is_dir() else path.parent


def read_checkpoint(path: Path) -> dict[str, Any]:
    """One checkpoint file, verified: a one-line error when it is missing, unreadable, foreign or corrupt."""
    if not path.is_file():
        raise VitsslError(f"checkpoint {path} does not exist; pass a run folder or a .pt file written by vitssl")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for torn or foreign files
        raise VitsslError(
            f"could not read checkpoint {path} ({type(exc).__name__}); it is torn, corrupt or not a vitssl checkpoint"
        ) from None
    if not isinstance(ckpt, dict) or "method" not in ckpt or "config" not in ckpt:
        raise VitsslError(f"{path} is not a vitssl checkpoint (no 'method'/'config' entries)")
    if "checksum" in ckpt and ckpt["checksum"] != checksum(ckpt):
        raise VitsslError(f"checkpoint {path} fails its checksum: its bytes changed after it was written")
    return ckpt


def load_checkpoint(path: str | Path, fallback: bool = True, live_ok: bool = False) -> dict[str, Any]:
    """Load a vitssl checkpoint safely (tensors and plain containers only, checksum verified).

    Given a run folder, its newest good checkpoint: when ``last.pt`` is torn, truncated or corrupt, one line says
    so on stderr and the newest good older checkpoint (``last-<step>.pt``) is used instead. A run folder that a
    live run is training is refused in one line naming it (unless ``live_ok``: the run reading its own folder);
    a checkpoint file named directly is always read (checkpoints are written atomically).
    """
    path = Path(path)
    if not path.is_dir():
        return read_checkpoint(path)
    if not live_ok:
        check_not_in_use(path)
    candidates = [path / LAST, path / NEW, *older_checkpoints(path)]
    if not any(c.exists() for c in candidates):
        raise VitsslError(f"{path} holds no checkpoint ({LAST}); pass a run folder written by vitssl pretrain")
    problems: list[str] = []
    for candidate in candidates:
        if not candidate.exists():
            continue
        try:
            ckpt = read_checkpoint(candidate)
        except VitsslError as exc:
            if not fallback:
                raise
            problems.append(str(exc))
            continue
        if problems:
            logger.warning(f"{problems[0]}; using {candidate.name} (step {ckpt.get('step')})")
        return ckpt
    raise VitsslError(f"no readable checkpoint in {path}: {problems[0]}; delete the run folder to start again")


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
