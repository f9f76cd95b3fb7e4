"""`make bench`: vitssl on the fixed DINO workload and on every method's CIFAR-10 preset, against lightly's DINO.

    python benchmarks/bench.py [--quick] [--rounds 3] [--steps 4] [--repeats 2] [--workloads fixed,sit_vit_tiny]
        [--data FOLDER] [--threads 2] [--out DIR] [--no-peer] [--peer-forward per-resolution|per-view] [--toy]

Each measurement runs in a fresh worker process (benchmarks/measure.py for vitssl, benchmarks/peer_lightly.py in
the peer's venv for lightly), so peak memory is per workload and nothing of one run warms the next. The rounds
interleave the two implementations (vitssl then lightly, then lightly then vitssl, ...) so that the slow and fast
phases of a shared machine hit both; step times are pooled over the rounds and the median step gives images/s.
See docs/benchmarks.md for what each number means.

Writes ``bench.md``, ``bench.json`` (every round, every step time, machine, versions, commit) and
``summary.json`` (the headline numbers) into ``--out`` (default benchmarks/results/, or benchmarks/results/quick/
with ``--quick``), and prints the tables. The full run takes over an hour on 2 cores; ``--quick`` (one
round, two steps) a few minutes; ``--quick --toy`` (toy model sizes, for the tests) seconds per workload.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    HERE,
    RESULTS,
    environment,
    fmt,
    markdown_table,
    rate_from_step_times,
    run_worker,
    worker_env,
    write_json,
    write_text,
)
from workloads import FIXED, PRESETS, WORKLOADS, fixed_workload  # noqa: E402

PEER_VENV = HERE / ".peer-venv"
SUMMARY_KEYS = (
    "model_step_images_per_s",
    "matmul_gflops",
    "utilisation",
    "end_to_end_over_model_step",
    "peak_rss_mib",
)


# -- running the workers ------------------------------------------------------------------------------------------
def vitssl_command(args: argparse.Namespace, workload: str, json_out: Path) -> list[str]:
    cmd = [sys.executable, str(HERE / "measure.py"), "--workload", workload, "--json-out", str(json_out)]
    cmd += ["--steps", str(args.steps), "--repeats", str(args.repeats), "--e2e-steps", str(args.e2e_steps)]
    cmd += ["--matmul-repeats", str(args.matmul_repeats), "--threads", str(args.threads)]
    cmd += ["--data", args.data] if args.data else []
    return cmd + (["--toy"] if args.toy else [])


def peer_command(args: argparse.Namespace, json_out: Path) -> list[str]:
    cmd = [str(args.peer_python), str(HERE / "peer_lightly.py"), "--json-out", str(json_out)]
    cmd += ["--steps", str(args.steps), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    cmd += ["--forward", args.peer_forward]
    return cmd + (["--toy"] if args.toy else [])


def peer_unavailable(args: argparse.Namespace) -> str | None:
    """Why the peer cannot run, or None when its interpreter is there (it reports a missing lightly itself)."""
    if args.no_peer:
        return "not run (--no-peer)"
    status_file = Path(args.peer_python).parents[1] / "peer_env.json"
    if status_file.exists():
        status = json.loads(status_file.read_text())
        if not status.get("ok"):
            return f"the peer venv could not be made: {status.get('reason')}"
    if Path(args.peer_python).exists():
        return None
    return f"no peer interpreter at {args.peer_python}; make it with `python benchmarks/peer_env.py` (make bench does)"


def run_rounds(args: argparse.Namespace, workdir: Path) -> dict[str, dict[str, list[dict]]]:
    """Every worker of every round: {workload: {"vitssl": [result per round], "lightly": [...]}}."""
    runs: dict[str, dict[str, list[dict]]] = {w: {"vitssl": [], "lightly": []} for w in args.workloads}
    skip_peer = peer_unavailable(args)
    for r in range(args.rounds):
        for workload in args.workloads:
            sides = ["vitssl"]
            if workload == FIXED and skip_peer is None:
                sides = ["vitssl", "lightly"] if r % 2 == 0 else ["lightly", "vitssl"]
            for side in sides:
                out = workdir / f"{workload}-{side}-{r}.json"
                cmd = vitssl_command(args, workload, out) if side == "vitssl" else peer_command(args, out)
                result = run_worker(cmd, out, env=worker_env(args.threads), timeout=args.timeout)
                runs[workload][side].append(result)
                print(f"round {r + 1}/{args.rounds} {workload} {side}: {brief(result)}", file=sys.stderr)
    if skip_peer is not None and FIXED in runs:
        runs[FIXED]["lightly"].append({"error": skip_peer})
    return runs


def brief(result: dict) -> str:
    if "error" in result:
        return "FAILED: " + result["error"]
    return f"{result['model_step_images_per_s']:.1f} images/s"


# -- aggregation --------------------------------------------------------------------------------------------------
def median_of(results: list[dict], key: str) -> float | None:
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None


def aggregate_vitssl(results: list[dict]) -> dict[str, Any]:
    """Pooled over rounds: median-step rates, median matmul rate, utilisation from those two, peak memory."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return {"error": "; ".join(r["error"] for r in results) or "no run", **dict.fromkeys(SUMMARY_KEYS)}
    images = ok[0]["images_per_step"]
    model_times = [t for r in ok for t in r["model_step_seconds"]]
    e2e_times = [t for r in ok for t in r["end_to_end_seconds"]]
    model_rate = rate_from_step_times(images, model_times)
    e2e_rate = rate_from_step_times(images, e2e_times)
    flops = ok[0]["flops_per_step"]
    achieved = flops / statistics.median(model_times) / 1e9
    matmul = median_of(ok, "matmul_gflops")
    return {
        "description": ok[0]["description"],
        "config": ok[0]["config"],
        "crops": ok[0]["crops"],
        "images_per_step": images,
        "num_workers": ok[0]["num_workers"],
        "model_step_images_per_s": model_rate,
        "model_step_images_per_s_by_round": [rate_from_step_times(images, r["model_step_seconds"]) for r in ok],
        "model_step_samples": len(model_times),
        "flops_per_step": flops,
        "gemm_flops_per_step": ok[0]["gemm_flops_per_step"],
        "achieved_gflops": achieved,
        "matmul_gflops": matmul,
        "square_matmul_gflops": median_of(ok, "square_matmul_gflops"),
        "utilisation": achieved / matmul if matmul else None,
        "gemm_share_of_step": median_of(ok, "gemm_share_of_step"),
        "end_to_end_images_per_s": e2e_rate,
        "end_to_end_over_model_step": e2e_rate / model_rate,
        "peak_rss_mib": max(r["peak_rss_mib"] for r in ok),
        "peak_rss_mib_model_step": max(r["peak_rss_mib_model_step"] for r in ok),
        "errors": [r["error"] for r in results if "error" in r],
    }


def aggregate_peer(results: list[dict], vitssl: list[dict]) -> dict[str, Any]:
    """The peer's pooled rate, vitssl / peer (pooled, and per round as paired ratios), or the reason it is null."""
    ok = [r for r in results if "error" not in r]
    errors = [r["error"] for r in results if "error" in r]
    if not ok:
        return {"peer": None, "peer_error": "; ".join(errors) or "not run", "peer_model_step_images_per_s": None}
    images = ok[0]["images_per_step"]
    times = [t for r in ok for t in r["model_step_seconds"]]
    rate = rate_from_step_times(images, times)
    paired = [
        rate_from_step_times(images, v["model_step_seconds"]) / rate_from_step_times(images, p["model_step_seconds"])
        for v, p in zip(vitssl, results, strict=True)
        if "error" not in v and "error" not in p
    ]
    return {
        "peer": ok[0]["peer"],
        "peer_error": "; ".join(errors) or None,
        "peer_forward": ok[0]["forward"],
        "peer_model_step_images_per_s": rate,
        "peer_model_step_images_per_s_by_round": [rate_from_step_times(images, r["model_step_seconds"]) for r in ok],
        "peer_flops_per_step": ok[0]["flops_per_step"],
        "peer_achieved_gflops": ok[0]["flops_per_step"] / statistics.median(times) / 1e9,
        "peer_peak_rss_mib": max(r["peak_rss_mib"] for r in ok),
        "vitssl_over_peer_by_round": paired,
    }


def summarise(runs: dict[str, dict[str, list[dict]]]) -> dict[str, Any]:
    """The headline numbers: the fixed workload at the top level (with the peer), each preset under ``presets``."""
    summary: dict[str, Any] = {}
    if FIXED in runs:
        fixed = aggregate_vitssl(runs[FIXED]["vitssl"])
        peer = aggregate_peer(runs[FIXED]["lightly"], runs[FIXED]["vitssl"])
        rate, peer_rate = fixed.get("model_step_images_per_s"), peer.get("peer_model_step_images_per_s")
        summary.update(fixed)
        summary.update(peer)
        summary["vitssl_over_peer"] = rate / peer_rate if rate and peer_rate else None
        if peer.get("peer_achieved_gflops") and fixed.get("matmul_gflops"):
            summary["peer_utilisation"] = peer["peer_achieved_gflops"] / fixed["matmul_gflops"]
    else:
        summary.update({**dict.fromkeys(SUMMARY_KEYS), "peer": None, "peer_model_step_images_per_s": None})
        summary["peer_error"] = "the fixed workload was not run"
    summary["presets"] = {w: aggregate_vitssl(r["vitssl"]) for w, r in runs.items() if w != FIXED}
    summary["targets"] = targets(summary)
    return summary


def check(name: str, value: float | None, goal: float, higher_is_better: bool = True) -> dict[str, Any]:
    """One target of issue 15: the measured value, the goal, met or not, and by how much it is missed."""
    if value is None:
        return {"target": name, "value": None, "goal": goal, "met": None}
    met = value >= goal if higher_is_better else value <= goal
    return {"target": name, "value": value, "goal": goal, "met": met, "missed_by": None if met else abs(goal - value)}


def targets(s: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 15's targets that these measurements decide (activation checkpointing is not measured here)."""
    rss, peer_rss = s.get("peak_rss_mib_model_step"), s.get("peer_peak_rss_mib")
    out = [
        check("model step / peer >= 1.1", s.get("vitssl_over_peer"), 1.1),
        check("utilisation >= 0.80 (stretch 0.90)", s.get("utilisation"), 0.80),
        check("end to end / model step >= 0.95", s.get("end_to_end_over_model_step"), 0.95),
        check("peak RSS (model step) / peer's <= 1", ratio_of(rss, peer_rss), 1.0, higher_is_better=False),
    ]
    for name, preset in s.get("presets", {}).items():
        if s.get("utilisation") and preset.get("utilisation"):
            gap = abs(preset["utilisation"] - s["utilisation"])
            out.append(check(f"{name}: utilisation within 0.10 of the fixed workload's", gap, 0.10, False))
    return out


# -- tables -------------------------------------------------------------------------------------------------------
def fixed_table(s: dict[str, Any]) -> str:
    peer = s.get("peer") or "lightly (not run)"
    ratio = s.get("vitssl_over_peer")
    rows = [
        (
            "model step, images/s (median step)",
            fmt(s["model_step_images_per_s"]),
            fmt(s["peer_model_step_images_per_s"]),
            fmt(ratio, 2),
        ),
        (
            "achieved GFLOP/s (flop_counter FLOPs / median step)",
            fmt(s.get("achieved_gflops")),
            fmt(s.get("peer_achieved_gflops")),
            "",
        ),
        (
            "utilisation (achieved / matmul rate of the model's GEMMs)",
            fmt(pct(s["utilisation"]), 0, " %"),
            fmt(pct(s.get("peer_utilisation")), 0, " %"),
            "",
        ),
        ("matmul rate on the model's own GEMM shapes, GFLOP/s", fmt(s["matmul_gflops"]), "(same machine)", ""),
        ("end to end / model step (image folder, preset's workers)", fmt(s["end_to_end_over_model_step"], 2), "", ""),
        (
            "peak RSS, model step only, MiB",
            fmt(s.get("peak_rss_mib_model_step"), 0),
            fmt(s.get("peer_peak_rss_mib"), 0),
            fmt(ratio_of(s.get("peak_rss_mib_model_step"), s.get("peer_peak_rss_mib")), 2),
        ),
        ("peak RSS, whole run (model step + end to end), MiB", fmt(s["peak_rss_mib"], 0), "", ""),
    ]
    table = markdown_table(("", "vitssl", peer, "vitssl / peer"), rows)
    note = ""
    if s.get("peer_error"):
        note = f"\n\nPeer: {s['peer_error']}"
    elif s.get("vitssl_over_peer_by_round"):
        note = "\n\nvitssl / peer per round (paired): " + ", ".join(f"{r:.2f}" for r in s["vitssl_over_peer_by_round"])
    return table + note


def presets_table(presets: dict[str, dict[str, Any]]) -> str:
    header = (
        "preset",
        "model step images/s",
        "achieved GFLOP/s",
        "matmul GFLOP/s",
        "utilisation",
        "end to end images/s",
        "end to end / model step",
        "peak RSS MiB",
    )
    rows = []
    for name, p in presets.items():
        if p.get("error") and p.get("model_step_images_per_s") is None:
            rows.append((f"`{PRESETS[name]}`", "failed: " + p["error"][:80], "", "", "", "", "", ""))
            continue
        rows.append(
            (
                f"`{PRESETS[name]}`",
                fmt(p["model_step_images_per_s"]),
                fmt(p["achieved_gflops"]),
                fmt(p["matmul_gflops"]),
                fmt(pct(p["utilisation"]), 0, " %"),
                fmt(p["end_to_end_images_per_s"]),
                fmt(p["end_to_end_over_model_step"], 2),
                fmt(p["peak_rss_mib"], 0),
            )
        )
    return markdown_table(header, rows)


def pct(x: float | None) -> float | None:
    return None if x is None else 100 * x


def ratio_of(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def header(args: argparse.Namespace, env: dict[str, Any]) -> str:
    mode = "quick" if args.quick else "full"
    mode += ", toy sizes" if args.toy else ""
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    return (
        f"Benchmark ({mode}): {args.rounds} round(s) x {args.repeats} x {args.steps} timed steps per worker, "
        f"{args.threads} threads, data `{args.data or 'default'}`. Machine: {env['machine']['cpu']}, "
        f"{env['machine']['cores']} cores, load average {env['load_average_1_5_15']} at the start. {versions}. "
        f"Commit {env['commit']}{' (with local changes)' if env['dirty'] else ''}, {env['date_utc']}."
    )


def targets_table(rows: list[dict[str, Any]]) -> str:
    def verdict(t: dict[str, Any]) -> str:
        if t["met"] is None:
            return "not measured"
        return "met" if t["met"] else f"missed by {t['missed_by']:.2g}"

    rows_text = [(t["target"], fmt(t["value"], 2), verdict(t)) for t in rows]
    return markdown_table(("target (issue 15)", "measured", "verdict"), rows_text)


def render(args: argparse.Namespace, env: dict[str, Any], summary: dict[str, Any]) -> str:
    parts = [f"# vitssl benchmark\n\n{header(args, env)}"]
    if args.quick:
        parts.append("**Quick mode: a smoke run with too few steps to be a measurement.**")
    if FIXED in args.workloads:
        parts.append(f"## Fixed workload: {fixed_workload(args.toy).describe()}\n\n{fixed_table(summary)}")
    if summary["presets"]:
        parts.append(
            f"## CIFAR-10 presets (each preset's own batch, crops and workers)\n\n{presets_table(summary['presets'])}"
        )
    if summary["targets"]:
        parts.append(f"## Targets\n\n{targets_table(summary['targets'])}")
    return "\n\n".join(parts) + "\n"


# -- main ---------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 round, 2 steps: a smoke run, not a measurement")
    parser.add_argument("--toy", action="store_true", help="toy model sizes (for tests)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    parser.add_argument("--steps", type=int, help="timed steps per repeat (default 4; quick 2)")
    parser.add_argument("--repeats", type=int, help="repeats per worker (default 2; quick 1)")
    parser.add_argument("--e2e-steps", type=int, help="timed end-to-end steps per worker (default 4; quick 2)")
    parser.add_argument("--matmul-repeats", type=int, help="replays of the GEMMs (default 3; quick 1)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated: {', '.join(WORKLOADS)}")
    parser.add_argument(
        "--data",
        help="image folder for the end-to-end steps (default: $VITSSL_TEST_DATA/cifar10/"
        "train when set, else the built-in synthetic set)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results[/quick])")
    parser.add_argument("--no-peer", action="store_true", help="do not run lightly")
    parser.add_argument("--peer-python", type=Path, default=PEER_VENV / "bin" / "python")
    parser.add_argument("--peer-forward", choices=("per-resolution", "per-view"), default="per-resolution")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per worker")
    args = parser.parse_args(argv)
    defaults = {"rounds": (3, 1), "steps": (4, 2), "repeats": (2, 1), "e2e_steps": (4, 2), "matmul_repeats": (3, 1)}
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    args.out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env = environment(args.threads)
    with tempfile.TemporaryDirectory(prefix="vitssl-bench-") as workdir:
        runs = run_rounds(args, Path(workdir))
    summary = summarise(runs)
    summary.update(mode="quick" if args.quick else "full", toy=args.toy, rounds=args.rounds, commit=env["commit"])
    summary["date_utc"] = env["date_utc"]
    text = render(args, env, summary)
    print(text)
    write_text(args.out / "bench.md", text)
    write_json(args.out / "bench.json", {"arguments": vars(args), "environment": env, "summary": summary, "runs": runs})
    write_json(args.out / "summary.json", summary)
    print(f"wrote {args.out / 'bench.md'}, bench.json and summary.json", file=sys.stderr)


if __name__ == "__main__":
    main()
