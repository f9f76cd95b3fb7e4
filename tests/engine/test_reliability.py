"""Never lose a run: pre-emption signals, SIGKILL, torn or corrupt checkpoints, a full disk, clean metrics on
resume, moved run folders and finished runs. Interrupted runs must resume to bit-identical weights."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_OVERRIDES
from vitssl.checkpoints import older_checkpoints
from vitssl.commands.training import build_trainer
from vitssl.config import load_config
from vitssl.errors import VitsslError

pytestmark = pytest.mark.slow

STEPS = 96  # 24 images, 4 per step, 16 epochs: long enough to be interrupted in the middle


def overrides(folder: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.train={folder}",
        *TINY_OVERRIDES,
        "optim.epochs=16",
        "train.log_every=1",
        "model.drop_path=0.1",  # the RNG state must survive the interruption too
        f"train.out_dir={out}",
        *extra,
    ]


def steps_logged(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["step"] for r in records if "loss" in r]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "last.pt", weights_only=True)["method"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_image_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    build_trainer(load_config(None, overrides(tiny_image_folder, out))).fit()
    return out


def assert_same_run(a: Path, b: Path) -> None:
    assert steps_logged(b) == list(range(STEPS))  # every step exactly once
    wa, wb = weights(a), weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def start_cli(folder: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vitssl", "pretrain", *overrides(folder, out, *extra)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_steps(proc: subprocess.Popen, run: Path, count: int) -> None:
    deadline = time.time() + 120
    while len(steps_logged(run)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the run did not start in time"
        time.sleep(0.05)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_saves_and_the_resumed_run_is_identical(sig, code, uninterrupted, tiny_image_folder, tmp_path):
    run = tmp_path / "run"
    proc = start_cli(tiny_image_folder, run, "train.checkpoint_every=1000")  # no periodic checkpoint at all
    wait_for_steps(proc, run, 5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    lines = [line for line in err.splitlines() if line.startswith("vitssl:")]
    assert len(lines) == 1 and "re-run the same command to resume" in lines[0] and "Traceback" not in err
    stopped = torch.load(run / "last.pt", weights_only=True)["step"]
    assert 5 <= stopped < STEPS
    build_trainer(load_config(None, overrides(tiny_image_folder, run))).fit()
    assert_same_run(uninterrupted, run)


def test_sigkill_resumes_from_the_last_checkpoint_identically(uninterrupted, tiny_image_folder, tmp_path):
    run = tmp_path / "run"
    proc = start_cli(tiny_image_folder, run, "train.checkpoint_every=7")
    wait_for_steps(proc, run, 20)
    proc.kill()
    proc.communicate()
    assert len(steps_logged(run)) >= torch.load(run / "last.pt", weights_only=True)["step"] >= 14
    build_trainer(load_config(None, overrides(tiny_image_folder, run, "train.checkpoint_every=7"))).fit()
    assert_same_run(uninterrupted, run)  # the lost steps were logged once only


def test_a_run_killed_before_its_first_checkpoint_starts_its_history_again(tiny_image_folder, tmp_path):
    run = tmp_path / "run"
    proc = start_cli(tiny_image_folder, run, "train.checkpoint_every=1000")
    wait_for_steps(proc, run, 3)
    proc.kill()
    proc.communicate()
    assert not (run / "last.pt").exists()
    build_trainer(load_config(None, overrides(tiny_image_folder, run, "optim.epochs=1"))).fit()
    assert steps_logged(run) == list(range(6))


def _interrupted_at(folder: Path, run: Path, step: int, *extra: str) -> None:
    build_trainer(load_config(None, overrides(folder, run, "train.checkpoint_every=10", *extra))).fit(stop_at_step=step)


def _offset_of_largest_tensor(path: Path, data: bytearray) -> int:
    """A byte inside the stored data of the checkpoint's largest tensor (the middle of the file may be zip padding,
    whose damage is harmless and rightly goes unnoticed)."""
    import torch

    tensors = [t for t in torch.load(path, weights_only=True)["method"].values() if isinstance(t, torch.Tensor)]
    largest = max(tensors, key=lambda t: t.numel()).contiguous()
    start = bytes(data).find(largest.reshape(-1).view(torch.uint8).numpy().tobytes()[:256])
    assert start >= 0, "the largest tensor's bytes were not found in the file"
    return start + 100


@pytest.mark.parametrize("damage", ["truncated", "bit_flipped"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(
    damage, uninterrupted, tiny_image_folder, tmp_path, capfd
):
    run = tmp_path / "run"
    _interrupted_at(tiny_image_folder, run, 25)  # checkpoints at 10, 20 and 25: last.pt is step 25
    assert [p.name for p in older_checkpoints(run)] == ["last-00000020.pt"]  # keep_checkpoints=2
    data = bytearray((run / "last.pt").read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[_offset_of_largest_tensor(run / "last.pt", data)] ^= 0xFF  # torch still loads it; the checksum fails
    (run / "last.pt").write_bytes(bytes(data))
    build_trainer(load_config(None, overrides(tiny_image_folder, run, "train.checkpoint_every=10"))).fit()
    err = capfd.readouterr().err
    assert "using last-00000020.pt (step 20)" in err
    assert_same_run(uninterrupted, run)


def test_a_full_disk_keeps_the_last_good_checkpoint_and_says_where(tiny_image_folder, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _interrupted_at(tiny_image_folder, run, 10)
    before = (run / "last.pt").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("vitssl.checkpoints.torch.save", full)
    with pytest.raises(VitsslError, match=r"no space left on the device; [\d.]+ GiB free in .*run\)") as err:
        _interrupted_at(tiny_image_folder, run, 20)
    assert "\n" not in str(err.value)
    assert (run / "last.pt").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_a_moved_run_folder_resumes_and_only_another_recipe_is_refused(uninterrupted, tiny_image_folder, tmp_path):
    first = tmp_path / "first"
    _interrupted_at(tiny_image_folder, first, 30)
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(first, moved)
    relative = os.path.relpath(moved, Path.cwd())  # another spelling of the same folder
    build_trainer(load_config(None, overrides(tiny_image_folder, Path(relative), "train.checkpoint_every=10"))).fit()
    assert_same_run(uninterrupted, moved)
    with pytest.raises(VitsslError, match=r"different config: optim\.lr"):
        build_trainer(load_config(None, overrides(tiny_image_folder, moved, "optim.lr=0.1"))).fit()


def test_a_finished_run_says_so_and_exits_zero(uninterrupted, tiny_image_folder):
    cmd = [sys.executable, "-m", "vitssl", "pretrain", *overrides(tiny_image_folder, uninterrupted)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"already finished: step {STEPS}, final loss" in result.stdout and "nan" not in result.stdout


def test_resume_control_on_the_command_line(uninterrupted, tiny_image_folder, tmp_path):
    from vitssl.cli import main

    run = tmp_path / "run"
    shutil.copytree(uninterrupted, run)
    args = ["pretrain", *overrides(tiny_image_folder, run, "optim.epochs=1")]
    assert main([*args[:1], "--no-resume", *args[1:]]) == 2  # refused: the folder holds a run
    assert main([*args[:1], "--fresh", *args[1:]]) == 0
    assert (tmp_path / "run-2" / "last.pt").exists() and weights(run).keys() == weights(uninterrupted).keys()


@pytest.mark.parametrize("where", ["a_file", "under_a_file"])
def test_an_unusable_run_folder_is_one_line_before_any_work(where, tiny_image_folder, tmp_path):
    (tmp_path / "f").write_text("not a folder")
    out = tmp_path / "f" if where == "a_file" else tmp_path / "f" / "run"
    with pytest.raises(VitsslError, match="cannot write the run folder") as err:
        build_trainer(load_config(None, overrides(tiny_image_folder, out)))
    assert "\n" not in str(err.value)
