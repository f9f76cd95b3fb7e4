"""train.loggers: metrics go to CSV, Weights & Biases (offline) and MLflow (a local file store) as well as
metrics.jsonl, and a run stopped by a real SIGTERM and resumed continues the same W&B / MLflow run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_OVERRIDES

wandb = pytest.importorskip("wandb", reason="the wandb extra is not installed")
mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")


def overrides(folder: Path, out: Path, loggers: str) -> list[str]:
    return [
        f"data.train={folder}",
        *TINY_OVERRIDES,
        "optim.epochs=16",
        "train.log_every=1",
        "train.checkpoint_every=1000",
        f"train.loggers=[{loggers}]",
        f"train.out_dir={out}",
    ]


def steps_logged(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [r["step"] for r in map(json.loads, path.read_text().splitlines()) if "loss" in r]


def pretrain(folder: Path, run: Path, loggers: str, env: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vitssl", "pretrain", *overrides(folder, run, loggers)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture
def offline_env(tmp_path) -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the run folder's own file store
    env["WANDB_CACHE_DIR"] = env["WANDB_CONFIG_DIR"] = str(tmp_path / "wandb-home")
    return env


def test_a_sigterm_stopped_run_resumes_into_the_same_wandb_and_mlflow_runs(
    tiny_image_folder, tmp_path, offline_env, monkeypatch
):
    run = tmp_path / "run"
    proc = pretrain(tiny_image_folder, run, "tensorboard,csv,wandb,mlflow", offline_env)
    deadline = time.time() + 300
    while len(steps_logged(run)) < 5:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the run did not start in time"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    wandb_id = (run / "wandb_run_id").read_text().strip()
    mlflow_id = (run / "mlflow_run_id").read_text().strip()

    again = pretrain(tiny_image_folder, run, "tensorboard,csv,wandb,mlflow", offline_env)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert steps_logged(run) == list(range(96))

    # W&B: both segments wrote their local files inside the run folder, under the one run id kept there.
    assert (run / "wandb_run_id").read_text().strip() == wandb_id
    segments = sorted((run / "wandb").glob("offline-run-*"))
    assert len(segments) == 2 and all(s.name.endswith(f"-{wandb_id}") for s in segments)

    # MLflow: one run holds the whole loss curve, each step once.
    assert (run / "mlflow_run_id").read_text().strip() == mlflow_id
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # to read the run's file store here
    client = mlflow.tracking.MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    steps = sorted({m.step for m in client.get_metric_history(mlflow_id, "loss")})
    assert steps == list(range(96))
    assert client.get_run(mlflow_id).data.params["train.loggers"].startswith("['tensorboard'")

    # CSV: the same losses as metrics.jsonl, nothing the resumed run redid twice.
    with (run / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["metric"] == "loss"]
    assert [int(r["step"]) for r in rows] == list(range(96))
    jsonl = [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert [float(r["value"]) for r in rows] == pytest.approx(jsonl)


def test_without_the_extra_the_choice_is_one_line(tiny_image_folder, tmp_path, monkeypatch, capsys):
    from vitssl.cli import main

    monkeypatch.setitem(sys.modules, "wandb", None)  # the import system then raises ImportError for it
    assert main(["pretrain", *overrides(tiny_image_folder, tmp_path / "run", "wandb")]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip()
        == 'vitssl: error: train.loggers=[...,wandb] needs wandb; install it with pip install "vitssl[wandb]"'
    )


def test_an_unknown_logger_is_a_config_error(tiny_image_folder, tmp_path, capsys):
    from vitssl.cli import main

    assert main(["pretrain", *overrides(tiny_image_folder, tmp_path / "run", "tensorbord")]) == 2
    assert "expects one of 'tensorboard', 'csv', 'wandb', 'mlflow'" in capsys.readouterr().err
