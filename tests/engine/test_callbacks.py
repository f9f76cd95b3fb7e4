"""The trainer's hooks: which ones a fit calls, in which order, and where a stop signal cuts in."""

import os
import signal

import pytest

from conftest import TINY_OVERRIDES
from vitssl.api import build_trainer
from vitssl.config import load_config
from vitssl.engine.callbacks import Callback
from vitssl.errors import Interrupted


@pytest.fixture(scope="module")
def image_folder(tiny_image_folder):
    return tiny_image_folder


def two_step_trainer(root, out):
    """24 images, 4 per step: 6 steps an epoch; a third of an epoch is 2 steps, each logged."""
    overrides = [f"data.train={root}", *TINY_OVERRIDES, "optim.epochs=0.34", "train.log_every=1"]
    trainer = build_trainer(load_config(None, [*overrides, f"train.out_dir={out}"]))
    assert trainer.total_steps == 2
    return trainer


class Recorder(Callback):
    """Records (hook, trainer.step, what else the hook saw) and what the run folder held at that moment."""

    def __init__(self, signal_at=None):
        self.events = []
        self.signal_at = signal_at

    def on_fit_start(self, trainer):
        self.events.append(("fit_start", trainer.step))

    def on_step_end(self, trainer, step):
        self.events.append(("step_end", trainer.step, step.state.step, step.logged))
        if trainer.step == self.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, to the trainer's own handler

    def on_between_steps(self, trainer):
        self.events.append(("between_steps", trainer.step))

    def on_stop(self, trainer, signum):
        # Called after the built-in callbacks: the checkpoint of the stopping step is already written.
        self.events.append(("stop", trainer.step, signum, (trainer.run_dir / "last.pt").exists()))

    def on_fit_end(self, trainer):
        self.events.append(("fit_end", trainer.step))


def test_a_two_step_fit_calls_every_hook_in_order(image_folder, tmp_path):
    trainer = two_step_trainer(image_folder, tmp_path / "r")
    recorder = Recorder()
    trainer.callbacks.append(recorder)
    result = trainer.fit()
    assert result.steps == 2
    assert recorder.events == [
        ("fit_start", 0),
        ("step_end", 1, 0, True),
        ("between_steps", 1),  # not after the last step: that step's work is on_fit_end's
        ("step_end", 2, 1, True),
        ("stop", 2, None, True),
        ("fit_end", 2),
    ]


def test_stop_at_step_ends_without_on_fit_end(image_folder, tmp_path):
    trainer = two_step_trainer(image_folder, tmp_path / "r")
    recorder = Recorder()
    trainer.callbacks.append(recorder)
    assert trainer.fit(stop_at_step=1).steps == 1
    started, first = ("fit_start", 0), ("step_end", 1, 0, True)
    assert recorder.events == [started, first, ("between_steps", 1), ("stop", 1, None, True)]


def test_a_stop_signal_comes_after_the_step_is_recorded_and_before_periodic_work(image_folder, tmp_path):
    trainer = two_step_trainer(image_folder, tmp_path / "r")
    recorder = Recorder(signal_at=1)
    trainer.callbacks.append(recorder)
    with pytest.raises(Interrupted, match=r"SIGTERM received: stopped after step 1 of 2") as caught:
        trainer.fit()
    assert caught.value.exit_code == 143
    assert recorder.events == [("fit_start", 0), ("step_end", 1, 0, True), ("stop", 1, signal.SIGTERM, True)]
    # The step's metrics line was written before the stop: the resumed run does not repeat it.
    assert "loss" in (tmp_path / "r" / "metrics.jsonl").read_text()
