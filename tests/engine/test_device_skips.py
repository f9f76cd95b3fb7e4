"""train.nonfinite_check=device: a non-finite loss is skipped on the device, exactly like the host check does,
and the host reads nothing from the device between logged steps."""

import signal

import pytest
import torch

from conftest import TINY_OVERRIDES
from vitssl.api import build_trainer
from vitssl.checkpoints import load_checkpoint
from vitssl.config import load_config
from vitssl.engine.nonfinite import DeviceSkipCounter, decides_on_device
from vitssl.engine.preemption import StopSignals
from vitssl.errors import VitsslError


@pytest.fixture(scope="module")
def image_folder(tiny_image_folder):
    return tiny_image_folder


def tiny_cfg(root, out, *extra):
    """12 steps of DINO on 24 tiny images, every step logged unless ``extra`` says otherwise."""
    base = [f"data.train={root}", *TINY_OVERRIDES, "optim.epochs=2", "train.log_every=1"]
    return load_config(None, [*base, "train.checkpoint_every=1000", f"train.out_dir={out}", *extra])


def run_with_a_nan_step(folder, out, mode, bad_calls=(3,)):
    """12 steps; the loss of the listed training_step calls (1-based) is NaN."""
    trainer = build_trainer(tiny_cfg(folder, out, f"train.nonfinite_check={mode}"))
    real_step = trainer.method.training_step
    calls = {"n": 0}

    def poisoned(batch, state):
        out = real_step(batch, state)
        calls["n"] += 1
        if calls["n"] in bad_calls:
            out.loss = out.loss * float("nan")
        return out

    trainer.method.training_step = poisoned
    result = trainer.fit()
    return result, trainer


def test_device_skip_matches_the_host_skip(image_folder, tmp_path):
    host, host_trainer = run_with_a_nan_step(image_folder, tmp_path / "sync", "sync")
    device, device_trainer = run_with_a_nan_step(image_folder, tmp_path / "device", "device")
    assert device_trainer.optimizer.defaults["fused"] and not host_trainer.optimizer.defaults["fused"]
    assert host.skipped_steps == device.skipped_steps == 1
    a, b = load_checkpoint(tmp_path / "sync"), load_checkpoint(tmp_path / "device")
    assert a["skipped_steps"] == b["skipped_steps"] == 1
    # The optimiser counted 11 updates in both (6 for the prototypes, frozen for the first epoch): the skipped
    # step left its step count alone.
    steps = {k: float(s["step"]) for k, s in b["optimizer"]["state"].items()}
    assert steps == {k: float(s["step"]) for k, s in a["optimizer"]["state"].items()}
    assert sorted(set(steps.values())) == [6.0, 11.0]
    for key in a["method"]:  # student, teacher (EMA), centre: fused and foreach AdamW differ only by rounding
        assert torch.isfinite(b["method"][key]).all(), key
        torch.testing.assert_close(b["method"][key], a["method"][key], atol=2e-5, rtol=1e-4, msg=key)


def test_a_device_run_without_the_skip_would_differ(image_folder, tmp_path):
    """The comparison above can fail: an update applied at the bad step (NaN) or one step fewer (another step
    skipped) moves the weights far beyond its tolerance."""
    host, _ = run_with_a_nan_step(image_folder, tmp_path / "sync", "sync", bad_calls=(3,))
    other, _ = run_with_a_nan_step(image_folder, tmp_path / "other", "device", bad_calls=(5,))
    a, b = load_checkpoint(tmp_path / "sync")["method"], load_checkpoint(tmp_path / "other")["method"]
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())
    assert worst > 1e-3


def test_device_mode_stops_after_too_many_nonfinite_steps(image_folder, tmp_path):
    with pytest.raises(VitsslError, match="not finite for [0-9]+ steps in a row"):
        run_with_a_nan_step(image_folder, tmp_path / "n", "device", bad_calls=range(4, 100))
    saved = load_checkpoint(tmp_path / "n")
    assert saved["skipped_steps"] >= 5  # train.max_nonfinite's default, read on a logged step
    assert all(torch.isfinite(v).all() for v in saved["method"].values() if v.is_floating_point())


class HostReads:
    """Counts reads of tensor values by the host (item, float, int, bool, tolist), by the trainer's step."""

    NAMES = ("item", "__float__", "__int__", "__bool__", "tolist")

    def __init__(self, monkeypatch, trainer):
        self.by_step: dict[int, int] = {}
        self.paused = False
        for name in self.NAMES:
            real = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(real, trainer))

    def _counting(self, real, trainer):
        def read(tensor, *args, **kwargs):
            if not self.paused:
                self.by_step[trainer.step] = self.by_step.get(trainer.step, 0) + 1
            return real(tensor, *args, **kwargs)

        return read


def test_device_mode_reads_nothing_between_logged_steps(image_folder, tmp_path, monkeypatch):
    trainer = build_trainer(tiny_cfg(image_folder, tmp_path / "r", "train.nonfinite_check=device", "train.log_every=3"))
    reads = HostReads(monkeypatch, trainer)
    real_batches = trainer.batches_from

    def data_not_counted(epoch, start):  # the sampler's index lists are host data, not device reads
        reads.paused = True
        inner = real_batches(epoch, start)
        reads.paused = False

        def iterate():
            while True:
                reads.paused = True
                try:
                    batch = next(inner)
                except StopIteration:
                    return
                finally:
                    reads.paused = False
                yield batch

        return iterate()

    trainer.batches_from = data_not_counted
    trainer.fit()
    # Steps 0, 3, 6, 9 and 11 (the last) are logged. A logged step's reads happen while trainer.step is the step
    # (its loss, its skip count) or the next one (the log line after the increment), and the end of the run reads
    # at step 12. Every other step reads nothing.
    allowed = {0, 1, 3, 4, 6, 7, 9, 10, 11, 12}
    assert set(reads.by_step) <= allowed, reads.by_step
    assert {2, 5, 8} & set(reads.by_step) == set()
    assert reads.by_step.get(0, 0) > 0  # the counter does count: a logged step reads its loss


def test_sync_mode_reads_the_loss_every_step(image_folder, tmp_path, monkeypatch):
    """The counter above can fail: the host check reads at every step."""
    trainer = build_trainer(tiny_cfg(image_folder, tmp_path / "r", "train.nonfinite_check=sync", "train.log_every=3"))
    reads = HostReads(monkeypatch, trainer)
    trainer.fit()
    assert {2, 5, 8} <= set(reads.by_step)


def test_mode_resolution():
    assert decides_on_device("device", torch.device("cpu"))
    assert not decides_on_device("auto", torch.device("cpu"))
    assert decides_on_device("auto", torch.device("cuda"))
    assert not decides_on_device("sync", torch.device("cuda"))
    with pytest.raises(VitsslError, match="train.nonfinite_check must be one of"):
        decides_on_device("never", torch.device("cpu"))


def test_skip_counter_counts_runs():
    counter = DeviceSkipCounter(torch.device("cpu"))
    for applied in (True, False, False, True, False):
        counter.add(torch.tensor(applied))
    assert counter.read() == (3, 1)
    counter.add(torch.tensor(False))
    assert counter.read() == (1, 2)  # the run of skipped steps goes on across reads; the total restarts


def test_lagged_stop_flag_answers_one_call_late(tmp_path):
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        signals = StopSignals()
        signals.received = signal.SIGTERM
        assert signals.requested(torch.device("cpu"), lagged=True) is None
        assert signals.requested(torch.device("cpu"), lagged=True) == signal.SIGTERM
        signals.drain()
        assert signals.requested(torch.device("cpu")) == signal.SIGTERM  # unlagged: at once
    finally:
        torch.distributed.destroy_process_group()
