"""Create the peer's own environment: a virtualenv with lightly, sharing vitssl's torch, torchvision and timm.

    python benchmarks/peer_env.py [--venv benchmarks/.peer-venv] [--requirement lightly]

The peer (lightly's DINO, benchmarks/peer_lightly.py) must run on exactly the same torch build as vitssl, or
the comparison measures two builds of torch. So the peer venv does not install torch again: a ``.pth`` file
puts this interpreter's site-packages (vitssl's venv) behind its own, and a constraints file pins torch,
torchvision, timm, numpy and pillow to the versions installed here, so pip adds only lightly and the packages
that it needs on top. The outcome is written to ``<venv>/peer_env.json`` (``ok``, the version installed, or the
reason it failed); ``benchmarks/bench.py`` reports that reason as ``peer: null`` instead of crashing. Exits 0
either way unless ``--strict``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = HERE / ".peer-venv"
SHARED = ("torch", "torchvision", "timm", "numpy", "pillow")
STATUS_FILE = "peer_env.json"


def venv_python(venv: Path) -> Path:
    """The interpreter of ``venv``."""
    return venv / "bin" / "python"


def shared_site_packages() -> list[str]:
    """This interpreter's site-packages folders (vitssl's venv), in order, without duplicates."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def pins() -> list[str]:
    """``name==version`` for every shared package installed here."""
    out = []
    for name in SHARED:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return out


def create_venv(venv: Path) -> None:
    """A plain venv (no pip upgrade) whose sys.path ends with vitssl's site-packages."""
    if not venv_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    purelib = subprocess.run(
        [str(venv_python(venv)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "zz_vitssl_shared.pth").write_text("\n".join(shared_site_packages()) + "\n")
    (venv / "constraints.txt").write_text("\n".join(pins()) + "\n")


def install(venv: Path, requirement: str) -> subprocess.CompletedProcess[str]:
    """``pip install requirement`` in the peer venv, the shared packages pinned."""
    cmd = [str(venv_python(venv)), "-m", "pip", "install", "--quiet", requirement]
    cmd += ["-c", str(venv / "constraints.txt")]
    return subprocess.run(cmd, capture_output=True, text=True)


def pip_error(result: subprocess.CompletedProcess[str], limit: int = 400) -> str:
    """pip's ERROR lines (else its last lines), shortened to ``limit`` characters."""
    lines = (result.stderr or result.stdout).strip().splitlines()
    errors = [line for line in lines if line.startswith("ERROR")] or lines[-3:]
    text = " | ".join(errors)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def import_check(venv: Path, package: str) -> tuple[str | None, str]:
    """(the version of ``package`` that the peer venv imports, or None; the last line of the import error)."""
    code = f"import {package}; print({package}.__version__)"
    result = subprocess.run([str(venv_python(venv)), "-c", code], capture_output=True, text=True)
    if result.returncode == 0:
        return result.stdout.strip(), ""
    lines = result.stderr.strip().splitlines()
    return None, lines[-1] if lines else f"exit code {result.returncode}"


def ensure_peer_env(venv: Path, requirement: str, package: str) -> dict[str, object]:
    """Create or complete the peer venv; the status dict that is also written to ``<venv>/peer_env.json``."""
    status: dict[str, object] = {"requirement": requirement, "python": str(venv_python(venv))}
    try:
        create_venv(venv)
        version, _ = import_check(venv, package)
        if version is None:
            result = install(venv, requirement)
            version, error = import_check(venv, package)
            if version is None and result.returncode != 0:
                status.update(ok=False, reason=f"pip install {requirement} failed: {pip_error(result)}")
            elif version is None:
                status.update(ok=False, reason=f"{package} was installed but does not import: {error}")
        if version is not None:
            status.update(ok=True, package=package, version=version)
    except (OSError, subprocess.CalledProcessError) as exc:
        status.update(ok=False, reason=f"could not create the peer venv {venv}: {exc}")
    venv.mkdir(parents=True, exist_ok=True)
    (venv / STATUS_FILE).write_text(json.dumps(status, indent=2) + "\n")
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--requirement", default="lightly", help="what pip installs (e.g. lightly==1.6.0)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the peer cannot be installed")
    args = parser.parse_args()
    status = ensure_peer_env(args.venv, args.requirement, "lightly")
    if status["ok"]:
        print(f"peer venv {args.venv}: lightly {status['version']}", file=sys.stderr)
    else:
        print(f"peer venv {args.venv}: not available ({status['reason']})", file=sys.stderr)
    sys.exit(1 if args.strict and not status["ok"] else 0)


if __name__ == "__main__":
    main()
