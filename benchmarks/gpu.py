"""GPU readiness in one call: the multi-crop DINO ViT-S/16 step in bf16 with fused AdamW, eager and compiled, and
a DDP smoke test over the GPUs present; one results file. Run it through benchmarks/gpu.sh (which finds Python
and makes vitssl importable offline).

    bash benchmarks/gpu.sh                 # on a GPU machine: writes $OUT/gpu.md (else benchmarks/results/gpu/)
    bash benchmarks/gpu.sh --dry-run       # the same code paths on CPU at toy sizes (gloo, aot_eager): seconds

What it runs:

1. Model step of ``configs/dino/vit_small_imagenet.yaml`` (ViT-S/16, 2 global 224 px + 10 local 96 px crops,
   head 65536, batch ``--batch`` per GPU, bf16 autocast, AdamW with ``fused=True`` as vitssl's trainer builds it
   on CUDA) on a fixed, pre-made batch: median step time, FLOPs (``torch.utils.flop_counter``), the bf16 matmul
   rate of the step's own GEMMs, utilisation, peak GPU memory. First eager, then with every student and teacher
   module compiled in place (``nn.Module.compile``, static shapes: one graph per crop size); the compiled
   variant's first step is reported as the compile time.
2. ``torchrun --standalone --nproc_per_node=<GPUs> -m vitssl pretrain`` of the same recipe for ``--ddp-steps``
   steps (NCCL on CUDA, as vitssl chooses): exit code, finite losses, logged images/s, a checkpoint written. With
   a single GPU there is one process, and vitssl creates no process group (it joins one only when WORLD_SIZE > 1):
   the file says so.

``--dry-run`` runs the same steps on CPU at toy sizes: ViT-Tiny/16 of depth 1, 32 / 16 px crops, batch 4, bf16
autocast on CPU, the ``aot_eager`` compile backend (dynamo + AOT autograd without code generation: seconds instead
of minutes on CPU; ``--compile-backend inductor`` tries the real one), 2 processes with gloo for the DDP smoke.

Offline: the data is the built-in synthetic set (generated locally on first use) unless ``--data`` names a folder;
nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, environment, fmt, jsonable, markdown_table, write_text  # noqa: E402
from flops import synchronize  # noqa: E402
from measure import model_step_metrics  # noqa: E402
from throughput import fixed_batch, repeat_batch, step_times  # noqa: E402

from vitssl.api import build_trainer  # noqa: E402
from vitssl.config import load_config  # noqa: E402
from vitssl.engine.trainer import Trainer  # noqa: E402

CONFIG = "configs/dino/vit_small_imagenet.yaml"
TOY = [
    "model.backbone=vit_tiny",
    "model.depth=1",
    "crops.global_size=32",
    "crops.local_size=16",
    "crops.local_count=2",
    "dino.out_dim=64",
    "dino.hidden_dim=32",
    "dino.bottleneck_dim=16",
]


# -- the model-step benchmark -------------------------------------------------------------------------------------
def recipe(args: argparse.Namespace) -> list[str]:
    """Overrides of the ViT-S/16 preset shared by the benchmark and the DDP smoke test."""
    overrides = [
        f"data.train={args.data}",
        "data.val=null",
        "data.cache=auto",
        "crops.local_count=10",
        "train.progress=false",
        f"train.precision={args.precision}",
        "train.nonfinite_check=device",  # CUDA's default, named so that the dry run takes the same path on CPU
    ]
    return overrides + (TOY if args.dry_run else [])


def build(args: argparse.Namespace, out_dir: str) -> Trainer:
    overrides = [
        *recipe(args),
        f"data.batch_size={args.batch}",
        f"data.max_images={args.batch * 2}",
        f"data.num_workers={0 if args.dry_run else 4}",
        f"train.device={args.device}",
        f"train.out_dir={out_dir}",
        *(["train.threads=1"] if args.dry_run else []),
    ]
    trainer = build_trainer(load_config(REPO / CONFIG, overrides))
    trainer.method.train()
    return trainer


def compile_in_place(trainer: Trainer, backend: str) -> list[str]:
    """Compile every module of the student and the teacher in place (names and parameters unchanged)."""
    compiled = []
    for net_name in ("student", "teacher"):
        net = getattr(trainer.method, net_name)
        for name, module in net.items():
            module.compile(backend=backend, dynamic=False)
            compiled.append(f"{net_name}.{name}")
    return compiled


def peak_gpu_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def compiled_metrics(trainer: Trainer, args: argparse.Namespace, eager: dict[str, Any]) -> dict[str, Any]:
    """The compiled step: compile time (first step), step times, and FLOPs / matmul rate taken from eager."""
    reset_peak(trainer.device)
    modules = compile_in_place(trainer, args.compile_backend)
    fixed = repeat_batch(fixed_batch(trainer))
    synchronize(trainer.device)
    start = time.perf_counter()
    trainer.optimizer_step(fixed, trainer.state_at(0))  # compiles the graphs of every crop size
    trainer.optimizer_step(fixed, trainer.state_at(0))
    synchronize(trainer.device)
    compile_seconds = time.perf_counter() - start
    times = [t for _ in range(args.repeats) for t in step_times(trainer, fixed, args.steps)]
    achieved = eager["flops_per_step"] / statistics.median(times) / 1e9
    return {
        "backend": args.compile_backend,
        "modules": modules,
        "first_two_steps_seconds": compile_seconds,
        "model_step_seconds": times,
        "model_step_images_per_s": trainer.images_per_step / statistics.median(times),
        "achieved_gflops": achieved,
        "utilisation": achieved / eager["matmul_gflops"],
        "peak_gpu_memory_gib": peak_gpu_gib(trainer.device),
    }


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Eager then compiled model step of the ViT-S/16 recipe (toy sizes in a dry run)."""
    out_dir = tempfile.mkdtemp(prefix="vitssl-gpu-bench-")
    try:
        trainer = build(args, out_dir)
        device = trainer.device
        fused = [bool(g.get("fused")) for g in trainer.optimizer.param_groups]
        reset_peak(device)
        square = 256 if args.dry_run else 8192
        eager = model_step_metrics(trainer, args.steps, args.repeats, args.matmul_repeats, square_size=square)
        eager["peak_gpu_memory_gib"] = peak_gpu_gib(device)
        result: dict[str, Any] = {
            "device": str(device),
            "precision": str(trainer.precision.dtype),
            "optimizer": {"name": type(trainer.optimizer).__name__, "fused": all(fused)},
            "batch_per_gpu": args.batch,
            "eager": eager,
        }
        if args.compile:
            try:
                result["compiled"] = compiled_metrics(trainer, args, eager)
            except Exception as exc:  # a compile failure is a result, not the end of the other checks
                result["compiled"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:500]}"}
        return result
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


# -- the DDP smoke test -------------------------------------------------------------------------------------------
def ddp_command(args: argparse.Namespace, nproc: int, out_dir: Path) -> list[str]:
    images = args.ddp_batch * nproc * args.ddp_steps
    overrides = [
        *recipe(args),
        f"data.batch_size={args.ddp_batch}",
        f"data.max_images={images}",
        f"data.num_workers={0 if args.dry_run else 4}",
        "optim.epochs=1",
        "optim.warmup_epochs=0",
        "train.log_every=1",
        "train.checkpoint_every=100000",
        f"train.device={args.device}",
        f"train.out_dir={out_dir}",
        *(["train.threads=1"] if args.dry_run else []),
    ]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [*cmd, "-m", "vitssl", "pretrain", str(REPO / CONFIG), *overrides]


def ddp_smoke(args: argparse.Namespace) -> dict[str, Any]:
    """A few steps of `vitssl pretrain` under torchrun on every GPU (2 CPU processes with gloo in a dry run)."""
    gpus = torch.cuda.device_count() if args.device != "cpu" else 0
    nproc = args.nproc or (2 if args.dry_run or gpus == 0 else gpus)
    backend = "nccl" if args.device != "cpu" and gpus else "gloo"
    out_dir = Path(tempfile.mkdtemp(prefix="vitssl-gpu-ddp-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if args.dry_run else dict(os.environ)
    start = time.perf_counter()
    try:
        proc = subprocess.run(ddp_command(args, nproc, out_dir), env=env, capture_output=True, text=True, timeout=900)
        result: dict[str, Any] = {
            "processes": nproc,
            "backend": backend if nproc > 1 else "none (one process: no process group)",
            "returncode": proc.returncode,
            "seconds": time.perf_counter() - start,
            **read_metrics(out_dir / "metrics.jsonl"),
            "checkpoint_written": (out_dir / "last.pt").exists(),
        }
        if proc.returncode != 0:
            result["stderr_tail"] = proc.stderr.strip().splitlines()[-15:]
        result["ok"] = proc.returncode == 0 and result["finite_losses"] and result["steps_logged"] == args.ddp_steps
        return result
    except subprocess.TimeoutExpired:
        return {"processes": nproc, "backend": backend, "ok": False, "error": "timed out after 900 s"}
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def read_metrics(path: Path) -> dict[str, Any]:
    """Steps logged, whether every loss is finite, the last loss and the median logged images/s after step 0."""
    if not path.exists():
        return {"steps_logged": 0, "finite_losses": False, "final_loss": None, "images_per_s": None}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    steps = [r for r in records if "loss" in r]
    losses = [r["loss"] for r in steps]
    speeds = [r["images_per_s"] for r in steps[1:] if r.get("images_per_s")]
    return {
        "steps_logged": len(steps),
        "finite_losses": bool(losses) and all(math.isfinite(x) for x in losses),
        "final_loss": losses[-1] if losses else None,
        "images_per_s": statistics.median(speeds) if speeds else None,
    }


# -- the results file ---------------------------------------------------------------------------------------------
def device_info() -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"cuda": False}
    props = torch.cuda.get_device_properties(0)
    return {
        "cuda": True,
        "cuda_version": torch.version.cuda,
        "gpus": torch.cuda.device_count(),
        "name": props.name,
        "capability": f"{props.major}.{props.minor}",
        "memory_gib": props.total_memory / 2**30,
        "nccl": ".".join(map(str, torch.cuda.nccl.version())) if hasattr(torch.cuda, "nccl") else None,
        "bf16_supported": torch.cuda.is_bf16_supported(),
    }


def step_row(name: str, r: dict[str, Any], matmul_gflops: float, scale: float) -> tuple[str, ...]:
    """One row of the model-step table (eager or compiled); rates in GFLOP/s divided by ``scale``."""
    if "error" in r:
        return (name, "failed: " + r["error"][:100], "", "", "", "")
    if name == "compiled":
        name = f"compiled ({r['backend']}; first two steps {r['first_two_steps_seconds']:.1f} s)"
    return (
        name,
        fmt(r["model_step_images_per_s"]),
        fmt(r["achieved_gflops"] / scale, 2),
        fmt(pct(r["utilisation"]), 0, " %"),
        fmt(r.get("peak_gpu_memory_gib"), 1),
        fmt(matmul_gflops / scale, 2),
    )


def ddp_table(ddp: dict[str, Any]) -> str:
    header = ("processes", "backend", "ok", "steps", "final loss", "images/s (logged)", "seconds")
    row = (
        ddp["processes"],
        ddp["backend"],
        "yes" if ddp.get("ok") else "NO",
        ddp.get("steps_logged"),
        fmt(ddp.get("final_loss"), 3),
        fmt(ddp.get("images_per_s")),
        fmt(ddp.get("seconds"), 0),
    )
    return "DDP smoke test (`torchrun ... -m vitssl pretrain`)\n\n" + markdown_table(header, [row])


def tables(result: dict[str, Any]) -> str:
    """The model-step table (eager, compiled) and the DDP table."""
    bench = result.get("benchmark", {})
    text = "(model-step benchmark not run)"
    if "eager" in bench:
        matmul = bench["eager"]["matmul_gflops"]
        scale, unit = (1.0, "GFLOP/s") if result["dry_run"] else (1e3, "TFLOP/s")
        rows = [step_row(name, bench[name], matmul, scale) for name in ("eager", "compiled") if name in bench]
        header = ("model step", "images/s", f"achieved {unit}", "utilisation", "peak GPU GiB", f"matmul {unit}")
        text = markdown_table(header, rows) + f"\n\nmatmul {unit}: the step's own GEMMs replayed (same shapes, dtype)."
    if result.get("ddp"):
        text += "\n\n" + ddp_table(result["ddp"])
    return text


def pct(x: float | None) -> float | None:
    return None if x is None else 100 * x


def render(result: dict[str, Any]) -> str:
    env, dev = result["environment"], result["device_info"]
    where = f"{dev['gpus']} x {dev['name']}, CUDA {dev['cuda_version']}" if dev.get("cuda") else "CPU (no CUDA)"
    title = "GPU readiness (DRY RUN on CPU, toy sizes: not a measurement)" if result["dry_run"] else "GPU readiness"
    head = (
        f"# {title}\n\n{result['workload']}. {where}; torch {env['versions'].get('torch')}, commit {env['commit']}, "
        f"{env['date_utc']}."
    )
    payload = json.dumps(jsonable(result), indent=2, allow_nan=False)
    return f"{head}\n\n{tables(result)}\n\n```json\n{payload}\n```\n"


def workload_text(args: argparse.Namespace) -> str:
    if args.dry_run:
        return (
            f"`{CONFIG}` at toy sizes (ViT-Tiny/16 depth 1, 2 x 32 px + 2 x 16 px crops, head 64), batch {args.batch}"
        )
    return f"`{CONFIG}`: DINO ViT-S/16, 2 x 224 px + 10 x 96 px crops, head 65536, batch {args.batch} per GPU"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes, gloo, aot_eager: tests the paths")
    parser.add_argument("--out", type=Path, help="results folder (default: $OUT, else benchmarks/results/gpu)")
    parser.add_argument("--data", default="synthetic", help="image folder or named set (default: synthetic)")
    parser.add_argument("--batch", type=int, help="images per GPU in the benchmark (default 64; dry run 4)")
    parser.add_argument("--steps", type=int, help="timed steps per repeat (default 10; dry run 2)")
    parser.add_argument("--repeats", type=int, help="repeats (default 3; dry run 1)")
    parser.add_argument("--matmul-repeats", type=int, help="GEMM replays (default 3; dry run 1)")
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32", "fp16"))
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the compiled variant")
    parser.add_argument("--compile-backend", help="torch.compile backend (default inductor; dry run aot_eager)")
    parser.add_argument("--skip-bench", action="store_true", help="only the DDP smoke test")
    parser.add_argument("--skip-ddp", action="store_true", help="only the model-step benchmark")
    parser.add_argument("--nproc", type=int, help="DDP processes (default: the GPUs present; dry run 2)")
    parser.add_argument("--ddp-batch", type=int, help="images per process in the DDP smoke (default 32; dry run 2)")
    parser.add_argument("--ddp-steps", type=int, default=3)
    args = parser.parse_args(argv)
    dry = args.dry_run
    defaults = {"batch": (4, 64), "steps": (2, 10), "repeats": (1, 3), "matmul_repeats": (1, 3), "ddp_batch": (2, 32)}
    for key, (toy, real) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, toy if dry else real)
    args.compile_backend = args.compile_backend or ("aot_eager" if dry else "inductor")
    args.device = "cpu" if dry else "cuda"
    env_out = os.environ.get("OUT")
    args.out = args.out or (Path(env_out) if env_out else RESULTS / "gpu")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu.py: no CUDA device is visible; use --dry-run to check the code paths on CPU", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"dry_run": args.dry_run, "workload": workload_text(args), "arguments": vars(args)}
    result["device_info"] = device_info()
    if not args.skip_bench:
        result["benchmark"] = benchmark(args)
    if not args.skip_ddp:
        result["ddp"] = ddp_smoke(args)
    result["environment"] = environment(torch.get_num_threads())
    text = render(result)
    path = args.out / ("gpu-dry-run.md" if args.dry_run else "gpu.md")
    write_text(path, text)
    print(text[: text.index("```json")])
    print(f"wrote {path}", file=sys.stderr)
    ddp_ok = result.get("ddp", {}).get("ok", True)
    return 0 if ddp_ok else 1


if __name__ == "__main__":
    sys.exit(main())
