"""Pre-emption of a whole torchrun job: SIGTERM to every process of it (the launcher, both ranks and their loader
workers), as SLURM's pre-emption and `scancel` deliver it to every process of a job step. Every rank finishes its
step, rank 0 saves, and ``vitssl-torchrun`` exits with 143, the status a requeue script tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_OVERRIDES

pytestmark = pytest.mark.slow


def losses_logged(run: Path) -> int:
    path = run / "metrics.jsonl"
    if not path.exists():
        return 0
    return sum("loss" in json.loads(line) for line in path.read_text().splitlines() if line.strip())


def descendants(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [d for child in map(int, children) for d in (child, *descendants(child))]


def test_sigterm_to_a_torchrun_job_saves_on_rank_0_and_exits_143(tiny_image_folder, tmp_path):
    run = tmp_path / "run"
    launch = [sys.executable, "-m", "vitssl.launch", "--standalone", "--nproc_per_node=2", "-m", "vitssl", "pretrain"]
    overrides = [
        f"data.train={tiny_image_folder}",
        *TINY_OVERRIDES,
        "data.batch_size=2",
        "data.num_workers=1",
        "optim.epochs=200",
        "train.log_every=1",
        "train.checkpoint_every=1000",
        f"train.out_dir={run}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*launch, *overrides],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 180
    while losses_logged(run) < 5:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the two-process run did not start in time"
        time.sleep(0.1)
    groups = set()
    for pid in [proc.pid, *descendants(proc.pid)]:
        with contextlib.suppress(ProcessLookupError):  # a loader worker ends with its epoch
            groups.add(os.getpgid(pid))
    for group in groups:  # torchrun starts each rank in a session of its own: signal every group of the job
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert len(groups) >= 3, "the launcher's group and each rank's (with its loader workers), all signalled"
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    saved = [line for line in err.splitlines() if line.startswith("vitssl: SIGTERM received")]
    assert len(saved) == 1, err[-3000:]  # rank 0 says it once for the run
    assert "re-run the same command to resume" in saved[0]
    assert any(line.startswith("vitssl-torchrun: SIGTERM received") for line in err.splitlines())
    assert torch.load(run / "last.pt", weights_only=True)["step"] >= 5  # work past the start was saved
