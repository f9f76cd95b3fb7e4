"""Two processes x B/2 images train exactly like one process x B images (DistributedDataParallel, gloo on CPU).

One ``torchrun --nproc_per_node 2`` launch runs every multi-process task of this file (the processes' start-up
is paid once); the one-process baselines run in the test process. Drop-path is off: its masks are drawn per
process, so with it two processes are equivalent in distribution only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_OVERRIDES
from vitssl.api import build_trainer
from vitssl.config import load_config

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("equivalence_worker.py")
PER_PROCESS_BATCH = 4
COMMON = [
    *TINY_OVERRIDES,
    "model.drop_path=0",
    "optim.epochs=2",  # 24 images, 8 per step: 6 steps
    "optim.warmup_epochs=0.3",
    "optim.lr=5e-3",
    "train.log_every=1",
    "train.checkpoint_every=1000",
    "dino.freeze_last_layer=0",
    "dino.warmup_teacher_temp_epochs=1",
]
SWIN = ["method=esvit", "model.backbone=swin_mini_32", "model.patch_size=null", "model.depth=null"]
SIT = ["method=sit", "sit.blur_kernel=[3, 5]"]
CASES = {
    "dino": [],
    "dino_bn_head": ["dino.use_bn_in_head=true"],
    "esvit_vit": ["method=esvit"],
    "esvit_swin": SWIN,
    "sit": SIT,
    "sit_masked": [*SIT, "sit.variant=masked"],
}


def overrides(folder: Path, case: str, batch: int) -> list[str]:
    knn = [f"data.val={folder}", "train.knn_k=5"] if case == "dino" else []  # the online k-NN at the end
    return [f"data.train={folder}", *COMMON, *CASES[case], *knn, f"data.batch_size={batch}"]


def run_torchrun(out: Path, tasks: dict, *extra: str) -> subprocess.CompletedProcess:
    (out / "tasks.json").write_text(json.dumps(tasks))
    # the caller's PYTHONPATH stays after tests/, so the workers import the same vitssl as this process
    path = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *extra, str(WORKER)]
    return subprocess.run([*cmd, str(out), str(out / "tasks.json")], env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def two_processes(tiny_image_folder, tmp_path_factory) -> Path:
    """Run every two-process task once; the folder holding their outputs."""
    out = tmp_path_factory.mktemp("two_processes")
    tasks = {
        "contrastive": True,
        "train": {case: overrides(tiny_image_folder, case, PER_PROCESS_BATCH) for case in CASES},
        "resume": {"dino_bn_head": overrides(tiny_image_folder, "dino_bn_head", PER_PROCESS_BATCH)},
        "poison": {"dino": overrides(tiny_image_folder, "dino", PER_PROCESS_BATCH)},
    }
    result = run_torchrun(out, tasks)
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def losses(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def noise_only_elements(cfg) -> dict[str, torch.Tensor]:
    """Parameter elements whose gradient is rounding noise (below 1e-7 of the largest gradient) at the first
    step of the one-process run: the key bias of attention (softmax ignores a shift of every key score), biases
    that a BatchNorm removes again, and a few weights with vanishing gradients. AdamW divides a gradient by its
    own running magnitude, so noise moves such an element by up to lr per step in either direction: no two runs
    (not even one process with another thread count) agree on them, and they are left out of the comparison."""
    trainer = build_trainer(cfg)
    batch = next(trainer.batches_from(0, 0))
    trainer.method.training_step(batch, trainer.state_at(0)).loss.backward()
    grads = {n: p.grad.abs() for n, p in trainer.method.named_parameters() if p.grad is not None}
    top = max(g.max() for g in grads.values())
    masks = {n: g < 1e-7 * top for n, g in grads.items()}
    masks.update({"teacher." + n[len("student.") :]: m for n, m in masks.items() if n.startswith("student.")})
    return masks


def weight_difference(one: dict, two: dict, noise: dict[str, torch.Tensor]) -> tuple[float, int]:
    """Max |difference| over parameters and buffers (BatchNorm running means, which absorb the noise-driven
    biases before them, excepted), and the number of elements left out."""
    worst, skipped = 0.0, 0
    for key, a in one.items():
        if key.endswith(("running_mean", "num_batches_tracked")):
            continue
        diff = (a.double() - two[key].double()).abs()
        mask = noise.get(key)
        if mask is not None:
            skipped += int(mask.sum())
            diff = diff[~mask]
        worst = max(worst, float(diff.max()) if diff.numel() else 0.0)
    return worst, skipped


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_processes_equal_one_process_with_the_whole_batch(case, two_processes, tiny_image_folder, tmp_path):
    cfg = load_config(None, [*overrides(tiny_image_folder, case, 2 * PER_PROCESS_BATCH), f"train.out_dir={tmp_path}"])
    build_trainer(cfg).fit()
    two = two_processes / "train" / case
    one_losses, two_losses = losses(tmp_path), losses(two)
    assert len(one_losses) == len(two_losses) == 6
    rel = max(abs(a - b) / abs(a) for a, b in zip(one_losses, two_losses, strict=True))
    assert rel <= 1e-5, (case, one_losses, two_losses)
    a = torch.load(tmp_path / "last.pt", weights_only=True)["method"]
    b = torch.load(two / "last.pt", weights_only=True)["method"]
    assert a.keys() == b.keys()
    worst, skipped = weight_difference(a, b, noise_only_elements(cfg))
    print(f"{case}: max loss rel diff {rel:.2e}, max weight diff {worst:.2e} ({skipped} noise-only elements left out)")
    assert worst <= 1e-5, case
    for key in a:  # the BatchNorm running means: close, not exact (see weight_difference)
        if key.endswith("running_mean"):
            assert torch.allclose(a[key], b[key], atol=1e-3), key
    if (tmp_path / "knn_online.json").exists():  # each image extracted once, gathered in order: the same k-NN
        one_knn = json.loads((tmp_path / "knn_online.json").read_text())
        assert one_knn == json.loads((two / "knn_online.json").read_text())
        assert case == "dino"


def test_contrastive_gradients_of_two_processes_equal_one_process(two_processes):
    """nt_xent and the masked InfoNCE gather keys with gradient: every process's queries send gradients to every
    process's keys, as in one process over the whole batch."""
    from vitssl.methods.sit.losses import nt_xent, symmetric_info_nce

    g = torch.Generator().manual_seed(0)
    z1, z2, t1, t2 = (torch.randn(8, 5, generator=g) for _ in range(4))
    ranks = json.loads((two_processes / "contrastive.json").read_text())
    for name, fn in {
        "nt_xent": lambda a, b: nt_xent(a, b, 0.5),
        "info_nce": lambda a, b: symmetric_info_nce(a, b, t1, t2, 0.2),
    }.items():
        a, b = z1.clone().requires_grad_(), z2.clone().requires_grad_()
        fn(a, b).backward()
        two = [torch.tensor(r[name]) for r in ranks]  # rank r: rows [z1 part; z2 part]
        got_a = torch.cat([t[:4] for t in two])
        got_b = torch.cat([t[4:] for t in two])
        assert torch.allclose(got_a, a.grad, atol=1e-6) and torch.allclose(got_b, b.grad, atol=1e-6), name


def test_every_process_leaves_the_group_before_it_exits(two_processes):
    """A process still in a gloo group at exit can abort in its teardown while another one works, and torchrun
    then calls a finished run failed: the library's exit handler destroys the group first."""
    for rank in (0, 1):
        assert (two_processes / f"in_group_at_exit.rank{rank}").read_text() == "False"


def test_a_non_finite_loss_on_one_rank_is_skipped_by_every_rank(two_processes):
    for rank in (0, 1):
        result = json.loads((two_processes / "poison" / f"dino.rank{rank}.json").read_text())
        assert result == {"steps": 6, "skipped": 1}
    assert len(losses(two_processes / "poison" / "dino")) == 6


def test_resume_under_two_processes_continues_exactly(two_processes):
    straight, resumed = two_processes / "train" / "dino_bn_head", two_processes / "resume" / "dino_bn_head"
    assert losses(straight) == losses(resumed)
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(resumed / "last.pt", weights_only=True)
    assert all(torch.equal(a["method"][k], b["method"][k]) for k in a["method"])
    assert b["world_size"] == 2 and len(b["rng_ranks"]) == 2


def test_resuming_with_another_global_batch_is_refused(two_processes, tiny_image_folder, tmp_path):
    import shutil

    from vitssl.checkpoints import checksum
    from vitssl.errors import VitsslError

    run = tmp_path / "run"
    shutil.copytree(two_processes / "resume" / "dino_bn_head", run)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["step"] = 3  # as if it had stopped in the middle
    ckpt["checksum"] = checksum(ckpt)
    torch.save(ckpt, run / "last.pt")
    same_global = overrides(tiny_image_folder, "dino_bn_head", 2 * PER_PROCESS_BATCH)
    build_trainer(load_config(None, [*same_global, f"train.out_dir={run}"]))  # 1 process x 8: accepted
    half = overrides(tiny_image_folder, "dino_bn_head", PER_PROCESS_BATCH)
    with pytest.raises(VitsslError, match="global batch of 8 images per step"):
        build_trainer(load_config(None, [*half, f"train.out_dir={run}"])).fit()


def test_a_rank_killed_under_torchrun_max_restarts_resumes_by_itself(two_processes, tiny_image_folder, tmp_path):
    """SIGKILL of one rank: torchrun restarts the group, which resumes from the last checkpoint (step 3) and ends
    with the weights of the uninterrupted two-process run."""
    tasks = {
        "restart": {"dino": [*overrides(tiny_image_folder, "dino", PER_PROCESS_BATCH), "train.checkpoint_every=3"]}
    }
    result = run_torchrun(tmp_path, tasks, "--max-restarts=1")
    assert result.returncode == 0, result.stderr[-4000:]
    straight, restarted = two_processes / "train" / "dino", tmp_path / "restart" / "dino"
    a = torch.load(straight / "last.pt", weights_only=True)["method"]
    b = torch.load(restarted / "last.pt", weights_only=True)["method"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert losses(straight) == losses(restarted)  # each step logged once, the lost steps 3-4 included
