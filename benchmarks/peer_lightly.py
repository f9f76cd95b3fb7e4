"""The peer: DINO written with lightly's building blocks, on the fixed workload; writes its result as JSON.

    benchmarks/.peer-venv/bin/python benchmarks/peer_lightly.py --json-out FILE [--toy] [--steps 4]
        [--repeats 2] [--threads 2] [--forward per-resolution|per-view]

Runs in the peer's own environment (benchmarks/peer_env.py), never imports vitssl, and is written from lightly's
public API: ``lightly.loss.DINOLoss`` (cross-entropy with centring; it updates its centre itself),
``lightly.models.modules.DINOProjectionHead``, ``lightly.models.utils.deactivate_requires_grad`` and
``update_momentum``. The workload is the one of benchmarks/workloads.py: the same timm ViT-Tiny (patch 4, depth
12, dynamic image size, drop-path 0), the same crops and head sizes, AdamW at the same learning rate and weight
decay (biases and 1-D tensors without decay, as DINO does; torch's default AdamW implementation, as a user of
lightly gets it), gradients clipped per tensor at 3, teacher EMA and centring every step.

``--forward per-resolution`` (default) runs the backbone once per crop size and the head once over all crops,
as DINO's reference code and vitssl do; ``per-view`` calls the network once per crop, as lightly's tutorials
do. Timing, FLOPs and peak memory are measured as in benchmarks/measure.py. When lightly cannot be imported the
result is ``{"error": ...}`` with the reason, and the exit code is 0 (the benchmark reports it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, package_versions, peak_rss_mib, rate_from_step_times, spread, write_json  # noqa: E402
from flops import count_step  # noqa: E402
from workloads import FixedWorkload, fixed_workload  # noqa: E402


class Student(nn.Module):
    """A timm ViT and a lightly DINO head; ``forward`` maps the list of crops to one logit tensor per crop."""

    def __init__(self, backbone: nn.Module, head: nn.Module, per_view: bool) -> None:
        super().__init__()
        self.backbone, self.head, self.per_view = backbone, head, per_view

    def forward(self, crops: Sequence[Tensor]) -> list[Tensor]:  # type: ignore[override]
        if self.per_view:
            return [self.head(self.backbone(crop)) for crop in crops]
        pooled = [self.backbone(torch.cat(list(group))) for group in same_size_runs(crops)]
        return list(self.head(torch.cat(pooled)).chunk(len(crops)))


def same_size_runs(crops: Sequence[Tensor]) -> list[list[Tensor]]:
    """Consecutive crops of one spatial size, grouped."""
    runs: list[list[Tensor]] = []
    for crop in crops:
        if runs and runs[-1][0].shape[-2:] == crop.shape[-2:]:
            runs[-1].append(crop)
        else:
            runs.append([crop])
    return runs


def build_student(work: FixedWorkload, per_view: bool) -> Student:
    import timm
    from lightly.models.modules import DINOProjectionHead

    backbone = timm.create_model(
        work.timm_name,
        pretrained=False,
        num_classes=0,
        patch_size=work.patch_size,
        img_size=work.global_size,
        depth=work.depth,
        drop_path_rate=0.0,
        dynamic_img_size=True,
    )
    head = DINOProjectionHead(
        input_dim=backbone.embed_dim,
        hidden_dim=work.hidden_dim,
        bottleneck_dim=work.bottleneck_dim,
        output_dim=work.out_dim,
        batch_norm=False,
        norm_last_layer=True,
    )
    return Student(backbone, head, per_view)


def adamw(model: nn.Module, work: FixedWorkload) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices only (biases and 1-D tensors get none)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1 and not n.endswith(".bias")]
    chosen = {id(p) for p in decay}
    rest = [p for p in params if id(p) not in chosen]
    groups = [{"params": decay, "weight_decay": work.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=work.peak_lr)


@torch.no_grad()
def clip_per_tensor(params: Sequence[nn.Parameter], max_norm: float) -> None:
    """Each gradient scaled to norm at most ``max_norm`` (DINO clips every tensor on its own)."""
    for p in params:
        if p.grad is not None:
            torch.nn.utils.clip_grad_norm_(p, max_norm)


def make_step(work: FixedWorkload, per_view: bool) -> tuple[Callable[[], float], int]:
    """One DINO training step on a fixed batch of random crops, and the number of images it takes."""
    from lightly.loss import DINOLoss
    from lightly.models.utils import deactivate_requires_grad, update_momentum

    torch.manual_seed(0)
    student = build_student(work, per_view)
    # The head's weight norm (torch.nn.utils.weight_norm) cannot be deep-copied: build the teacher and load.
    teacher = build_student(work, per_view)
    teacher.load_state_dict(student.state_dict())
    deactivate_requires_grad(teacher)
    criterion = DINOLoss(
        output_dim=work.out_dim,
        warmup_teacher_temp=work.teacher_temp,
        teacher_temp=work.teacher_temp,
        warmup_teacher_temp_epochs=1,
        student_temp=work.student_temp,
        center_momentum=work.center_momentum,
    )
    optimizer = adamw(student, work)
    trained = [p for p in student.parameters() if p.requires_grad]
    b = work.batch_size
    crops = [torch.randn(b, 3, work.global_size, work.global_size) for _ in range(work.global_count)]
    crops += [torch.randn(b, 3, work.local_size, work.local_size) for _ in range(work.local_count)]

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            teacher_out = teacher(crops[: work.global_count])
        student_out = student(crops)
        loss = criterion(teacher_out, student_out, teacher_temp=work.teacher_temp)
        loss.backward()
        clip_per_tensor(trained, work.clip_grad)
        optimizer.step()
        update_momentum(student, teacher, m=work.momentum_teacher)
        return float(loss.detach())

    return step, b


def measure(step: Callable[[], float], images: int, steps: int, repeats: int) -> dict[str, Any]:
    """Warm-up, one counted step, then ``repeats`` x ``steps`` timed steps."""
    step()
    counted = count_step(step)
    times = []
    for _ in range(repeats * steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    rate = rate_from_step_times(images, times)
    return {
        "images_per_step": images,
        "model_step_seconds": times,
        "model_step_images_per_s": rate,
        "model_step_seconds_spread": spread(times),
        "flops_per_step": counted.flops,
        "achieved_gflops": counted.flops / statistics.median(times) / 1e9,
        "peak_rss_mib": peak_rss_mib(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json-out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--forward", choices=("per-resolution", "per-view"), default="per-resolution")
    parser.add_argument("--toy", action="store_true", help="toy sizes (smoke tests)")
    parser.add_argument("--workload-json", help="a FixedWorkload as JSON (default: the fixed workload)")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    work = FixedWorkload.from_dict(json.loads(args.workload_json)) if args.workload_json else fixed_workload(args.toy)
    result: dict[str, Any] = {"workload": "fixed", "implementation": "lightly", "forward": args.forward}
    try:
        import lightly
    except Exception as exc:  # any import failure: the benchmark reports it rather than crashing
        result["error"] = f"lightly cannot be imported in {sys.executable}: {type(exc).__name__}: {exc}"
        write_json(args.json_out, result)
        print(result["error"], file=sys.stderr)
        return
    result["peer"] = f"lightly {lightly.__version__}"
    try:
        step, images = make_step(work, args.forward == "per-view")
        result.update(measure(step, images, args.steps, args.repeats))
    except Exception as exc:  # an API change in a new lightly: reported, not a crash of the whole benchmark
        result["error"] = f"the lightly peer failed: {type(exc).__name__}: {exc}"
        write_json(args.json_out, result)
        raise
    result["versions"] = package_versions(("lightly", "torch", "timm"))
    result["environment"] = environment(torch.get_num_threads())
    write_json(args.json_out, result)
    print(f"lightly: model step {result['model_step_images_per_s']:.1f} images/s", file=sys.stderr)


if __name__ == "__main__":
    main()
