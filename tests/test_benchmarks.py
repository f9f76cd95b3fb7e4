"""The benchmark scripts run end to end at toy sizes and write what they promise.

``benchmarks/bench.py --quick --toy`` (the fixed DINO workload, with the peer started in this interpreter: where it
has no lightly the results must say so rather than crash, where it has lightly the peer must run) and
``benchmarks/gpu.py --dry-run`` (eager and compiled step, two-process gloo DDP smoke test).
No timing is asserted: only that the files exist and the numbers are finite.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
SUMMARY_KEYS = (
    "model_step_images_per_s",
    "matmul_gflops",
    "utilisation",
    "end_to_end_over_model_step",
    "peer_model_step_images_per_s",
    "peer",
    "peak_rss_mib",
)
# The peer runs in this interpreter (--peer-python sys.executable): it can run only where lightly is installed.
LIGHTLY = importlib.util.find_spec("lightly") is not None
FINITE_KEYS = ("model_step_images_per_s", "matmul_gflops", "utilisation", "end_to_end_over_model_step", "peak_rss_mib")


def run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(BENCHMARKS / script), *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def positive_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def quick_bench(data: Path, out: Path) -> dict[str, Any]:
    """``bench.py --quick --toy`` on the fixed workload, the peer in this interpreter; its summary."""
    args = ["--quick", "--toy", "--workloads", "fixed", "--threads", "1", "--data", str(data)]
    result = run_script("bench.py", *args, "--out", str(out), "--peer-python", sys.executable)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


def test_quick_bench_writes_tables_and_summary_and_reports_a_missing_peer(tiny_image_folder, tmp_path):
    if LIGHTLY:
        pytest.skip("lightly is installed in this interpreter: the missing-peer report cannot be provoked here")
    # Without lightly the peer worker must report that, and the benchmark go on.
    summary = quick_bench(tiny_image_folder, tmp_path)
    assert set(SUMMARY_KEYS) <= set(summary)
    for key in FINITE_KEYS:
        assert positive_finite(summary[key]), (key, summary[key])
    assert positive_finite(summary["flops_per_step"]) and summary["flops_per_step"] >= summary["gemm_flops_per_step"]
    assert summary["peer"] is None
    assert "lightly" in summary["peer_error"] and summary["peer_model_step_images_per_s"] is None

    table = (tmp_path / "bench.md").read_text()
    assert "Fixed workload" in table and "utilisation" in table
    full = json.loads((tmp_path / "bench.json").read_text())
    env = full["environment"]
    assert env["versions"]["torch"] and env["machine"]["cores"] and "commit" in env
    assert full["runs"]["fixed"]["vitssl"][0]["model_step_seconds"]


def test_quick_bench_runs_the_peer_where_lightly_is_installed(tiny_image_folder, tmp_path):
    if not LIGHTLY:
        pytest.skip("lightly is not installed in this interpreter: the peer's run (make bench's peer venv) is untested")
    summary = quick_bench(tiny_image_folder, tmp_path)
    assert summary["peer"] is not None and summary["peer_error"] is None, summary.get("peer_error")
    assert positive_finite(summary["peer_model_step_images_per_s"])


def gpu_results(path: Path) -> dict[str, Any]:
    """The JSON block of a gpu.py results file."""
    text = path.read_text()
    return json.loads(text[text.index("```json") + len("```json") : text.rindex("```")])


def test_gpu_dry_run_runs_eager_compiled_and_ddp_on_cpu(tiny_image_folder, tmp_path):
    result = run_script(
        "gpu.py", "--dry-run", "--data", str(tiny_image_folder), "--out", str(tmp_path), "--ddp-steps", "2"
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]

    data = gpu_results(tmp_path / "gpu-dry-run.md")
    assert data["dry_run"] is True
    eager = data["benchmark"]["eager"]
    for key in ("model_step_images_per_s", "flops_per_step", "matmul_gflops", "utilisation"):
        assert positive_finite(eager[key]), (key, eager[key])
    assert data["benchmark"]["precision"] == "torch.bfloat16"
    compiled = data["benchmark"]["compiled"]
    assert "error" not in compiled, compiled
    assert compiled["backend"] == "aot_eager" and positive_finite(compiled["model_step_images_per_s"])
    ddp = data["ddp"]
    assert ddp["ok"] and ddp["processes"] == 2 and ddp["backend"] == "gloo", ddp
    assert ddp["finite_losses"] and ddp["checkpoint_written"]


def test_options_benchmark_times_each_variant_in_its_own_process(tmp_path):
    args = ["--toy", "--rounds", "1", "--steps", "1", "--threads", "1", "--variants", "fused", "checkpointing"]
    result = run_script("options.py", *args, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "options.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["fused", "checkpointing"]
    for row in rows:
        assert positive_finite(row["model_step_images_per_s"]) and positive_finite(row["peak_rss_mib"]), row
    text = (tmp_path / "options.md").read_text()
    assert "| checkpointing |" in text and "`python benchmarks/options.py --toy " in text  # relative to the repo


def test_learning_benchmark_scores_init_pretrained_and_pixels_and_plots(tiny_image_folder, tmp_path):
    from conftest import TINY_OVERRIDES

    data = tmp_path / "data"
    data.mkdir()
    (data / "train").symlink_to(tiny_image_folder)
    (data / "test").symlink_to(tiny_image_folder)
    args = ["--budgets", "0.05", "--methods", "dino", "--data", str(data), "--out", str(tmp_path / "out")]
    result = run_script("learn.py", *args, *TINY_OVERRIDES, "data.num_workers=0")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (row,) = json.loads((tmp_path / "out" / "learn.json").read_text())["rows"]
    for key in ("init", "pretrained", "pixels", "pretrain_minutes", "linear", "linear_init"):
        assert positive_finite(row[key]), (key, row)
    assert "train.budget_minutes=0.05" in row["commands"][0] and "--pixels" in row["commands"][1]
    assert "--fast" in row["commands"][2] and "--init-only" in row["commands"][3]
    # the commands name no machine: the interpreter as python, the run and data folders relative to the repository
    out = os.path.relpath(tmp_path / "out" / "dino-0.05min", REPO)
    assert all(c.startswith("python -m vitssl ") and f" {REPO}" not in c for c in row["commands"]), row["commands"]
    assert f"train.out_dir={out} " in row["commands"][0]
    assert f"data.train={os.path.relpath(data / 'train', REPO)} " in row["commands"][0]
    # the machine's matmul rate at the runs' thread count (OMP_NUM_THREADS=1), kept with the row
    assert positive_finite(row["matmul_gflops"]) and row["threads"] == 1 and row["cpu"]
    assert (tmp_path / "out" / "learn.png").stat().st_size > 1000
    table = (tmp_path / "out" / "learn.md").read_text()
    assert "| dino | 0.05 min |" in table and "matmul GFLOP/s |" in table
    assert f"| {row['matmul_gflops']:.0f} |" in table


def load_benchmark(name: str) -> Any:
    """The module ``benchmarks/NAME.py`` (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_bench", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_learn_benchmark() -> Any:
    return load_benchmark("learn")


def test_commands_are_recorded_relative_to_the_repository_root(monkeypatch):
    """A recorded command names no machine: the interpreter is ``python``; a path inside the repository or beside
    it is relative to the repository root; a data folder elsewhere under $VITSSL_TEST_DATA is written with the
    variable (quoted so that it still expands when pasted); other tokens are kept."""
    common = load_benchmark("common")
    repo = common.REPO
    elsewhere = Path("/", repo.parts[1] + "-elsewhere", "data")  # shares no top-level folder with the repository
    monkeypatch.setenv("VITSSL_TEST_DATA", str(elsewhere))
    cmd = [sys.executable, "-m", "vitssl", "knn", str(repo / "benchmarks/results/learn/dino-15min")]
    cmd += ["--train", str(repo.parent / "shared/data/cifar10/train"), f"data.train={elsewhere}/cifar10/train"]
    cmd += ["--k", "20", "train.out_dir=runs/x"]
    assert common.recorded(cmd) == (
        "python -m vitssl knn benchmarks/results/learn/dino-15min --train ../shared/data/cifar10/train "
        'data.train="$VITSSL_TEST_DATA"/cifar10/train --k 20 train.out_dir=runs/x'
    )
    assert (
        common.recorded_token(f"data.train={elsewhere}/cifar10/train") == "data.train=$VITSSL_TEST_DATA/cifar10/train"
    )
    assert common.recorded_path(str(repo / "configs")) == "configs"


def test_learning_benchmark_keeps_the_rows_it_did_not_redo(tmp_path):
    """A run of one method adds its row to the earlier table instead of replacing it; a redone row replaces its
    earlier self."""
    learn = load_learn_benchmark()
    earlier = [
        {"method": "dino", "budget_minutes": 15.0, "pretrained": 29.4},
        {"method": "sit", "budget_minutes": 15.0},
    ]
    (tmp_path / "learn.json").write_text(json.dumps({"rows": earlier}))
    new = [{"method": "sit", "budget_minutes": 15.0, "pretrained": 30.0}]
    assert learn.earlier_rows(tmp_path / "learn.json", new) == [earlier[0]]
    assert learn.earlier_rows(tmp_path / "missing.json", new) == []


def test_learning_benchmark_scales_a_short_budget_presets_epochs_with_the_budget():
    """The budget only shortens a run, so a 60-minute row of a 15-minute preset asks for four times its epochs; a
    paper-style preset (no built-in budget) keeps its own."""
    learn = load_learn_benchmark()
    assert learn.epochs_for("configs/dino/vit_mini_cifar10_15min.yaml", 60.0) == ["optim.epochs=32"]
    assert learn.epochs_for("configs/esvit/swin_mini_cifar10_15min.yaml", 30.0) == ["optim.epochs=8"]
    assert learn.epochs_for("configs/dino/vit_mini_cifar10_15min.yaml", 15.0) == []
    assert learn.epochs_for("configs/dino/vit_tiny_cifar10.yaml", 60.0) == []
