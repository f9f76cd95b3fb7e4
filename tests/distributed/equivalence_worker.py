"""Run by ``torchrun`` from the multi-process tests (gloo on CPU). Everything happens in one process group, one
task after another, so the start-up cost of the processes is paid once.

usage: torchrun --nproc_per_node N equivalence_worker.py OUT_DIR TASKS_JSON

TASKS_JSON: {"train": {case: [overrides]}, "resume": {case: [overrides]}, "poison": {case: [overrides]},
"contrastive": true}. Results are written under OUT_DIR by rank 0 (the run folders) or by every rank (gradients).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch


def train(out: Path, cases: dict[str, list[str]]) -> None:
    from vitssl.api import build_trainer
    from vitssl.config import load_config

    for name, overrides in cases.items():
        build_trainer(load_config(None, [*overrides, f"train.out_dir={out / name}"])).fit()


def resume(out: Path, cases: dict[str, list[str]]) -> None:
    """Stop after 3 steps (as a pre-empted job would), then build a new trainer that resumes to the end."""
    from vitssl.api import build_trainer
    from vitssl.config import load_config

    for name, overrides in cases.items():
        cfg = load_config(None, [*overrides, f"train.out_dir={out / name}"])
        build_trainer(cfg).fit(stop_at_step=3)
        build_trainer(cfg).fit()


def poison(out: Path, cases: dict[str, list[str]]) -> None:
    """The loss of optimiser step 2 is NaN on rank 1 only: every rank must skip that step and finish."""
    from vitssl import distributed as dist
    from vitssl.api import build_trainer
    from vitssl.config import load_config

    for name, overrides in cases.items():
        trainer = build_trainer(load_config(None, [*overrides, f"train.out_dir={out / name}"]))
        real = trainer.method.training_step

        def poisoned(batch, state, real=real):
            result = real(batch, state)
            if state.step == 2 and dist.rank() == 1:
                result.loss = result.loss * float("nan")
            return result

        trainer.method.training_step = poisoned
        result = trainer.fit()
        (out / f"{name}.rank{dist.rank()}.json").write_text(
            json.dumps({"steps": result.steps, "skipped": result.skipped_steps})
        )


def killed_and_restarted(out: Path, cases: dict[str, list[str]]) -> None:
    """Under ``torchrun --max-restarts 1``: in the first attempt rank 1 dies by SIGKILL in step 4; torchrun
    restarts the group, and the same command resumes from the last checkpoint (step 3) by itself."""
    import os
    import signal

    from vitssl import distributed as dist
    from vitssl.api import build_trainer
    from vitssl.config import load_config

    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    for name, overrides in cases.items():
        trainer = build_trainer(load_config(None, [*overrides, f"train.out_dir={out / name}"]))
        real = trainer.method.after_optimizer_step

        def after(state, real=real):
            real(state)
            if first_attempt and dist.rank() == 1 and state.step == 4:
                os.kill(os.getpid(), signal.SIGKILL)

        trainer.method.after_optimizer_step = after
        trainer.fit()


def contrastive(out: Path) -> None:
    """Gradients of nt_xent and of the masked InfoNCE with this rank's half of a fixed batch, averaged over ranks
    as the trainer's DistributedDataParallel does."""
    from vitssl import distributed as dist
    from vitssl.methods.sit.losses import nt_xent, symmetric_info_nce

    g = torch.Generator().manual_seed(0)
    z1, z2, t1, t2 = (torch.randn(8, 5, generator=g) for _ in range(4))
    part = slice(dist.rank() * 4, (dist.rank() + 1) * 4)
    grads = {}
    for name, fn in {
        "nt_xent": lambda a, b: nt_xent(a, b, 0.5),
        "info_nce": lambda a, b: symmetric_info_nce(a, b, t1[part], t2[part], 0.2),
    }.items():
        a, b = z1[part].clone().requires_grad_(), z2[part].clone().requires_grad_()
        fn(a, b).backward()
        # each rank's gradient for its own rows; the trainer's average over ranks is a division by world size
        grads[name] = torch.cat([a.grad, b.grad]) / dist.world_size()
    gathered = dist.all_gather_object({k: v.tolist() for k, v in grads.items()})
    if dist.is_main():
        (out / "contrastive.json").write_text(json.dumps(gathered))


def main() -> None:
    out, tasks = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    out.mkdir(parents=True, exist_ok=True)
    import atexit

    from vitssl import distributed as dist

    rank = int(os.environ["RANK"])
    # registered first, so it runs after the library's own exit handler (atexit runs last-in, first-out)
    atexit.register(lambda: (out / f"in_group_at_exit.rank{rank}").write_text(str(dist.is_distributed())))
    dist.init_from_env(torch.device("cpu"))
    if tasks.get("contrastive"):
        contrastive(out)
    train(out / "train", tasks.get("train", {}))
    resume(out / "resume", tasks.get("resume", {}))
    poison(out / "poison", tasks.get("poison", {}))
    killed_and_restarted(out / "restart", tasks.get("restart", {}))


if __name__ == "__main__":
    main()
