"""Never lose a run: pre-emption signals, SIGKILL, torn or corrupt checkpoints, a full disk, clean metrics on
resume, moved run folders and finished runs. Interrupted runs must resume to bit-identical weights."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_OVERRIDES
from vitssl.api import build_trainer
from vitssl.checkpoints import load_checkpoint, older_checkpoints
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


# -- real faults: the whole process group, a full disk, a second run -------------------------------------------


def start_in_own_group(folder: Path, out: Path, *extra: str, limit: int | None = None) -> subprocess.Popen:
    """``vitssl pretrain`` in a new session (its own process group, as a scheduler's job is), optionally under a
    file-size limit (Python ignores SIGXFSZ, so an oversized write fails with EFBIG as on a full quota)."""

    def limit_file_size() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    cmd = [sys.executable, "-m", "vitssl", "pretrain", *overrides(folder, out, *extra)]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=limit_file_size,
    )


def vitssl_lines(err: str) -> list[str]:
    """vitssl's lines on stderr, but the progress note of a resumed run (``vitssl: resuming RUN at step N``)."""
    return [
        line for line in err.splitlines() if line.startswith("vitssl:") and not line.startswith("vitssl: resuming ")
    ]


def no_temporary_files(run: Path) -> bool:
    return not [p for p in run.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".last.pt.")]


def test_sigterm_to_the_whole_process_group_with_loader_workers_saves_and_resumes_identically(
    uninterrupted, tiny_image_folder, tmp_path
):
    """What SLURM's pre-emption and `docker stop` deliver: SIGTERM to every process of the job, the two loader
    workers included. The workers ignore it, the main process finishes its step and saves past the last periodic
    checkpoint, and the resumed run ends with the uninterrupted run's weights."""
    run = tmp_path / "run"
    proc = start_in_own_group(tiny_image_folder, run, "data.num_workers=2", "train.checkpoint_every=7")
    wait_for_steps(proc, run, 10)
    workers = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert len(workers) >= 2, "the run had no loader workers to signal"
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "exited unexpectedly" not in err
    lines = vitssl_lines(err)
    assert len(lines) == 1 and "SIGTERM received" in lines[0] and "re-run the same command" in lines[0], err
    stopped = torch.load(run / "last.pt", weights_only=True)["step"]
    assert stopped >= 10 and stopped % 7 != 0  # saved on the signal, past the last periodic checkpoint
    build_trainer(load_config(None, overrides(tiny_image_folder, run, "data.num_workers=2"))).fit()
    assert_same_run(uninterrupted, run)


def _checkpoint_at_step_10(folder: Path, run: Path) -> bytes:
    _interrupted_at(folder, run, 10)
    return (run / "last.pt").read_bytes()


def test_a_file_size_limit_ends_the_run_in_one_line_and_keeps_the_last_checkpoint(tiny_image_folder, tmp_path):
    """A 3 MB file-size limit, smaller than a checkpoint: torch.save fails inside its C++ writer. One line names
    the limit and the folder's free space; last.pt is untouched and loads; no temporary file is left."""
    run = tmp_path / "run"
    before = _checkpoint_at_step_10(tiny_image_folder, run)
    assert len(before) > 3_000_000  # the next checkpoint cannot fit under the limit
    proc = start_in_own_group(tiny_image_folder, run, "train.checkpoint_every=10", limit=3_000_000)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    lines = vitssl_lines(err)
    assert len(lines) == 1, err
    assert re.search(
        r"could not write the checkpoint .*last\.pt \(the file is larger than the file-size limit", lines[0]
    )
    assert re.search(r"[\d.]+ [GM]iB free in .*run\); the previous checkpoint .* is intact", lines[0])
    assert (run / "last.pt").read_bytes() == before
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 10
    assert no_temporary_files(run)


def test_a_metrics_write_that_fails_ends_the_run_in_one_line(tiny_image_folder, tmp_path):
    """metrics.jsonl grown to the file-size limit: the next line cannot be appended (EFBIG from Python's write)."""
    run = tmp_path / "run"
    before = _checkpoint_at_step_10(tiny_image_folder, run)
    limit = len(before) + 2_000_000
    padding = json.dumps({"step": 0, "note": "x" * 1000}) + "\n"  # kept by a resume at step 10 (an earlier step)
    with (run / "metrics.jsonl").open("a") as handle:
        while (run / "metrics.jsonl").stat().st_size + len(padding) < limit - 200:
            handle.write(padding)
            handle.flush()
    proc = start_in_own_group(tiny_image_folder, run, "train.checkpoint_every=10", limit=limit)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    lines = vitssl_lines(err)
    assert "Traceback" not in err and len(lines) == 1, err
    assert "could not write the metrics" in lines[0] and "file-size limit" in lines[0] and "is intact" in lines[0]
    assert (run / "last.pt").read_bytes() == before


@pytest.fixture
def small_tmpfs(tmp_path) -> Path:
    """A 16 MiB tmpfs (room for two checkpoints of the tiny model, not three); skipped where mount is refused."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk_ends_the_run_in_one_line_and_keeps_the_last_checkpoints(tiny_image_folder, small_tmpfs):
    run = small_tmpfs / "run"
    proc = start_in_own_group(tiny_image_folder, run, "train.checkpoint_every=5")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    lines = vitssl_lines(err)
    assert "Traceback" not in err and len(lines) == 1, err
    assert "could not write the checkpoint" in lines[0] and "no space left on the device" in lines[0], err
    assert re.search(r"[\d.]+ MiB free in", lines[0])
    step = torch.load(run / "last.pt", weights_only=True)["step"]  # intact and loadable
    assert step == 10 and [p.name for p in older_checkpoints(run)] == ["last-00000005.pt"]
    assert no_temporary_files(run)


def test_a_second_run_in_a_live_runs_folder_is_refused_and_a_killed_runs_lock_is_taken_over(
    tiny_image_folder, tmp_path
):
    from vitssl.cli import main

    run = tmp_path / "run"
    live = start_cli(tiny_image_folder, run, "optim.epochs=1000", "train.checkpoint_every=5")
    try:
        wait_for_steps(live, run, 6)
        second = subprocess.run(
            [sys.executable, "-m", "vitssl", "pretrain", *overrides(tiny_image_folder, run)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert second.returncode == 2
        lines = vitssl_lines(second.stderr)
        assert len(lines) == 1 and f"is in use by another run (pid {live.pid} on host" in lines[0], second.stderr
        with pytest.raises(VitsslError, match=f"being trained by a live run \\(pid {live.pid}"):
            load_checkpoint(run)  # what knn, export and every evaluation read
        assert load_checkpoint(run / "last.pt")["step"] >= 5  # a checkpoint file named directly is still read
        assert main(["pretrain", "--fresh", *overrides(tiny_image_folder, run, "optim.epochs=1")]) == 0
        assert (tmp_path / "run-2" / "last.pt").exists()  # --fresh steps past a live run's folder
    finally:
        live.kill()
        live.communicate()
    steps = len(steps_logged(run))
    build_trainer(load_config(None, overrides(tiny_image_folder, run, "optim.epochs=1000"))).fit(stop_at_step=steps + 2)
    assert load_checkpoint(run)["step"] == steps + 2  # the SIGKILLed run's lock was stale: taken over


def test_unwritable_pictures_and_tensorboard_are_one_warning_line_each_and_training_goes_on(
    tiny_image_folder, tmp_path, capfd
):
    """Files where the pictures and TensorBoard folders should be: their writes fail for real, each is reported
    once, and the run ends normally with its checkpoint and metrics."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "pictures").write_text("a file where the pictures folder should be")
    (run / "tensorboard").write_text("a file where the TensorBoard folder should be")
    sit = ["method=sit", "sit.blur_kernel=[3, 5]", "optim.epochs=1", "train.picture_every=2"]
    result = build_trainer(load_config(None, overrides(tiny_image_folder, run, *sit))).fit()
    assert result.steps == 6 and (run / "last.pt").exists() and len(steps_logged(run)) == 6
    err = capfd.readouterr().err
    failures = [line for line in err.splitlines() if line.startswith("vitssl: warning: could not write")]
    assert len([line for line in failures if "the picture" in line]) == 1, err
    assert len([line for line in failures if "TensorBoard" in line]) == 1, err
    assert all(re.search(r"[\d.]+ [GM]iB free in", line) for line in failures)
    assert "Traceback" not in err
