"""Learning tests for SiT: a short CPU pretraining must beat the same network at initialisation on 20-NN top-1
(the feature is the contrastive token, as the presets set), and the rotation head must do far better than chance
on held-out images.

The recipes are the shipped presets with fixed, short step budgets (measured wall times are in docs/sit.md and
docs/learning.md).
"""

import json
import math
from pathlib import Path

import pytest
import torch

from vitssl.config import load_config
from vitssl.methods.sit.method import rotation_accuracy

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "sit"


def held_out_rotation_accuracy(trainer, count=1000):
    queries = trainer.knn.queries
    images = torch.stack([queries[i]["views"] for i in range(min(count, len(queries)))])
    accuracy = rotation_accuracy(trainer.method, images)
    print(f"rotation accuracy on {len(images)} held-out images x 4 rotations: {accuracy:.1f}% (chance 25%)")
    return accuracy


@pytest.mark.slow
def test_sit_learns_on_synthetic_shapes(tmp_path, pretrain_and_compare):
    cfg = load_config(
        CONFIGS / "demo.yaml",
        [
            f"train.out_dir={tmp_path}",
            "train.progress=false",
            "train.knn_every=0",
            "train.picture_every=0",
            # 6 epochs, not the preset's 3. The result depends on the float summation order (threads, kernels):
            # 3 epochs gave 43.5 -> 56.6 with one torch thread and 47.8 with two; 6 epochs gave 58.2 on an
            # earlier machine and 50.7 on a later one, where vitssl 0.1 (4992ce4) and this code produce
            # the same per-step losses bit for bit. Four runs spread over 8 points (+4.3 to +14.7), and a third
            # machine type gave 43.5 -> 46.8 (+3.3), so the bar is +3 points (2 standard
            # errors of one accuracy on 1000 queries), not the +10 one order cleared.
            "optim.epochs=6",
        ],
    )
    run = pretrain_and_compare(cfg)
    result = run.result
    assert result.skipped_steps == 0 and math.isfinite(result.final_loss)
    assert run.after >= run.before + 3
    assert (tmp_path / "pictures" / f"reconstruction_step{result.steps:06d}.png").is_file()


@pytest.fixture(scope="module")
def cifar_run(cifar10_root, tmp_path_factory, pretrain_and_compare):
    """One short SiT pretraining on CIFAR-10 with the 15-minute preset (ViT-Mini/8, grey and blur patches, KoLeo)
    for 2 fixed epochs (3124 steps of 32 images, about 5 minutes on 2 cores), shared below."""
    out = tmp_path_factory.mktemp("sit_cifar_run")
    cfg = load_config(
        CONFIGS / "vit_mini_cifar10_15min.yaml",
        [
            f"data.train={cifar10_root / 'train'}",
            f"data.val={cifar10_root / 'test'}",
            f"train.out_dir={out}",
            "train.progress=false",
            "train.knn_every=0",
            "train.picture_every=0",
            "train.budget_minutes=null",  # a fixed length: the same steps on every machine
            "optim.epochs=2",
        ],
    )
    run = pretrain_and_compare(cfg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    spread = [r["feature_std"] for r in records if "feature_std" in r]
    return run.trainer, run.before, run.after, run.result, spread


@pytest.mark.slow
def test_short_sit_cifar10_pretraining_is_healthy_and_learns_rotation(cifar_run):
    """No non-finite step, contrastive tokens that stay spread out, and a rotation head far above chance (25 %)
    on held-out images: 43-50 % after 1-3 epochs of this recipe on the tuning split (docs/learning.md)."""
    trainer, _, _, result, spread = cifar_run
    assert result.skipped_steps == 0 and math.isfinite(result.final_loss)
    assert spread and spread[-1] > 0.05  # 1/sqrt(96) = 0.10 when fully spread, near 0 when collapsed
    assert held_out_rotation_accuracy(trainer) >= 35.0


@pytest.mark.slow
def test_sit_learns_on_cifar10(cifar_run):
    """The original formulation gains 3 points of 20-NN over the same network at initialisation: this recipe, 2
    epochs, gained 9.3 points on the tuning split (docs/learning.md)."""
    _, before, after, _, _ = cifar_run
    assert after >= before + 3


@pytest.fixture(scope="module")
def cifar_masked_run(cifar10_root, tmp_path_factory, pretrain_and_compare):
    """One short pretraining of the masked variant on CIFAR-10 (625 steps of 32 images, patch 8)."""
    out = tmp_path_factory.mktemp("sit_masked_cifar_run")
    cfg = load_config(
        CONFIGS / "vit_tiny_cifar10_masked.yaml",
        [
            f"data.train={cifar10_root / 'train'}",
            f"data.val={cifar10_root / 'test'}",
            f"train.out_dir={out}",
            "train.progress=false",
            "train.knn_every=0",
            "train.picture_every=0",
            "model.patch_size=8",
        ],
    )
    run = pretrain_and_compare(cfg)
    return run.trainer, run.before, run.after, run.result


@pytest.mark.slow
def test_sit_masked_variant_learns_on_cifar10(cifar_masked_run):
    """The teacher's contrastive token gains 3 points of 20-NN: measured 24.4 -> 28.1 % for this run."""
    _, before, after, result = cifar_masked_run
    assert result.skipped_steps == 0 and math.isfinite(result.final_loss)
    assert after >= before + 3
