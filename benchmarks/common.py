"""What every benchmark script shares: provenance (machine, versions, commit), timing statistics, peak memory,
result files and JSON-speaking worker processes.

Imports only the standard library (and torch, lazily), so the peer's interpreter, which has no vitssl, can use it.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
PACKAGES = ("torch", "torchvision", "timm", "numpy", "vitssl", "lightly")


DATA_VARIABLE = "VITSSL_TEST_DATA"
"""The environment variable that names the benchmarks' data folder (CIFAR-10 under ``cifar10/``)."""


def recorded_path(value: str) -> str:
    """``value`` as a result file records it, so that results do not name the machine: the interpreter as
    ``python``; an absolute path inside the repository or beside it (under the same top-level folder) relative to
    the repository root; one elsewhere under ``$VITSSL_TEST_DATA`` as ``$VITSSL_TEST_DATA/...``; any other
    absolute path relative to the repository root too (still right on that machine, from the repository root).
    Anything that is not an absolute path is kept as it is."""
    if value == sys.executable:
        return "python"
    if not os.path.isabs(value):
        return value
    path = Path(os.path.normpath(value))
    if path.parts[:2] != REPO.parts[:2]:
        data = os.environ.get(DATA_VARIABLE)
        if data and os.path.isabs(data) and path.is_relative_to(os.path.normpath(data)):
            rest = path.relative_to(os.path.normpath(data)).as_posix()
            return f"${DATA_VARIABLE}" + ("" if rest == "." else f"/{rest}")
    return os.path.relpath(path, REPO)


def _key_and_value(token: str) -> tuple[str, str]:
    """``("key=", "value")`` of a ``key=value`` token, ``("", token)`` of anything else (an absolute path too)."""
    key, sep, value = token.partition("=")
    return (key + sep, value) if sep and not token.startswith("/") else ("", token)


def recorded_token(token: str) -> str:
    """One token of a command or one ``key=value`` override as a result file lists it (unquoted): its path (alone
    or the value of ``key=path``) as :func:`recorded_path` writes it."""
    key, value = _key_and_value(token)
    return key + recorded_path(value)


def _recorded_word(token: str) -> str:
    """:func:`recorded_token` as a shell word, quoted so that ``$VITSSL_TEST_DATA`` still expands when the command
    is pasted."""
    key, given = _key_and_value(token)
    value = recorded_path(given)
    variable = f"${DATA_VARIABLE}"
    if value != given and value.startswith(variable):
        rest = value[len(variable) :]
        return (shlex.quote(key) if key else "") + f'"{variable}"' + (shlex.quote(rest) if rest else "")
    return shlex.quote(key + value)


def recorded(cmd: Sequence[str]) -> str:
    """``cmd`` as a result file records it: one shell line, every token's path as :func:`recorded_path` writes it
    (``python -m vitssl ...``, paths relative to the repository root)."""
    return " ".join(_recorded_word(token) for token in cmd)


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (torch's own ``__version__`` when it is imported: it names the build)."""
    versions: dict[str, str] = {}
    for name in names:
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None)
        if version is None:
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        versions[name] = str(version)
    return versions


def git_commit(repo: Path = REPO) -> dict[str, Any]:
    """The commit checked out in ``repo`` and whether tracked files differ from it (None outside git)."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("diff", "--quiet", "HEAD", "--", ".")
    except OSError:
        return {"commit": None, "dirty": None}
    commit = head.stdout.strip() if head.returncode == 0 else None
    return {"commit": commit, "dirty": dirty.returncode == 1 if commit else None}


def gpu_names() -> list[str]:
    """Names of the visible CUDA devices (empty without torch or without CUDA)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def environment(threads: int | None = None) -> dict[str, Any]:
    """Where and with what a measurement ran: machine, OS, Python, package versions, threads, commit, time."""
    env: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "arch": platform.machine(),
            "os": platform.platform(),
            "gpus": gpu_names(),
        },
        "python": platform.python_version(),
        "versions": package_versions(),
        "threads": threads,
        **git_commit(),
    }
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    env["load_average_1_5_15"] = [round(x, 2) for x in load] if load else None
    return env


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (loader worker processes not included)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, minimum and maximum of ``values`` (NaN for none) and how many there were."""
    if not values:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def rate_from_step_times(images_per_step: int, times: Sequence[float]) -> float:
    """Images/s of the median step (robust to the odd slow step on a shared machine)."""
    return images_per_step / statistics.median(times) if times else math.nan


def finite_or_none(value: Any) -> Any:
    """``value`` unless it is a non-finite float (JSON has no NaN): then None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def jsonable(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None, recursively."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return finite_or_none(obj)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented, strict JSON (non-finite numbers become null), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n")


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table of ``rows`` (cells already formatted as strings, or anything ``str`` takes)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(value: Any, digits: int = 1, suffix: str = "") -> str:
    """A number for a table: ``digits`` decimals, ``n/a`` for None or NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}{suffix}"


def run_worker(cmd: Sequence[str], json_out: Path, env: dict[str, str] | None = None, timeout: float = 3600) -> dict:
    """Run a worker script that writes its result to ``json_out``; the result, or ``{"error": ...}`` with the
    tail of its output when it failed (a benchmark reports a broken worker instead of dying with it)."""
    json_out.unlink(missing_ok=True)
    try:
        proc = subprocess.run(list(cmd), env=env, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if json_out.exists():
        result = json.loads(json_out.read_text())
        if proc.returncode != 0 and "error" not in result:
            result["error"] = f"exit code {proc.returncode}"
        return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
    return {"error": f"exit code {proc.returncode}: " + " | ".join(tail)}


def worker_env(threads: int) -> dict[str, str]:
    """The environment of a worker process: ``threads`` OpenMP / MKL threads."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
