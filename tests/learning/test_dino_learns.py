"""Learning tests: a short CPU pretraining must beat the same network at initialisation on 20-NN top-1.

The recipes are the shipped presets with fixed, short budgets (measured wall times are in the README); the
k-NN memory and query sets are fixed stratified subsets.
"""

import json
import math
from pathlib import Path

import pytest

from vitssl.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


# The demo's bars: the least gain measured over seeds 0-2 with 1 and 2 torch threads (docs/learning.md), less a
# margin for other CPUs, whose kernels round differently and whose runs therefore differ.
DEMO_KNN_GAIN = 15.0  # least measured: +27.5
DEMO_JACCARD_GAIN = 5.0  # least measured: +7.4 (seed 1, 2 threads); seed 0 here: +15.7 (2 threads), +17.8 (1)


@pytest.mark.slow
def test_dino_demo_learns_on_synthetic_shapes(dino_demo_run):
    """The demo recipe (the session's shared run, tests/conftest.py) trains without a non-finite step and gains
    a clear margin of 20-NN over the same network at initialisation (measured: +27.5 to +29.8 points over seeds and
    thread counts, docs/learning.md)."""
    assert math.isfinite(dino_demo_run.result.final_loss) and dino_demo_run.result.skipped_steps == 0
    assert dino_demo_run.after >= dino_demo_run.before + DEMO_KNN_GAIN


@pytest.mark.slow
def test_demo_attention_moves_onto_the_objects(dino_demo_run, capsys):
    """DINO's headline picture, true on the demo: the [CLS] attention of the pretrained network (8 x 8 patches)
    overlaps the true foreground of 500 synthetic test images clearly more than at initialisation (Jaccard of the
    60 %-mass mask of the head mean; measured gains over seeds and thread counts in docs/learning.md)."""
    from vitssl.cli import main

    run_dir = dino_demo_run.trainer.cfg.train.out_dir
    args = ["attention", str(run_dir), "--score", "--compare-init", "--max-images", "500", "--device", "cpu"]
    assert main(args) == 0
    scores = json.loads((Path(run_dir) / "attention_score.json").read_text())
    assert scores["pretrained"]["mean_map"] >= scores["init"]["mean_map"] + DEMO_JACCARD_GAIN, scores


# The teacher's batch-mean output over the 256 prototypes must stay spread over at least this many (its perplexity,
# `prototypes_in_use`): the preset's runs keep about 50 through their first 2000 steps, while the hour-long run
# that stopped learning had narrowed onto 5-23 (docs/learning.md).
PROTOTYPES_IN_USE_FLOOR = 24


@pytest.fixture(scope="module")
def cifar_run(cifar10_root, tmp_path_factory, pretrain_and_compare):
    """One short DINO pretraining on CIFAR-10 with the 15-minute preset (ViT-Mini, patch 8, KoLeo; 2 epochs of
    fixed length instead of the preset's wall-clock budget, about 4 minutes on 2 cores), shared below."""
    out = tmp_path_factory.mktemp("cifar_run")
    cfg = load_config(
        CONFIGS / "dino" / "vit_mini_cifar10_15min.yaml",
        [
            f"data.train={cifar10_root / 'train'}",
            f"data.val={cifar10_root / 'test'}",
            f"train.out_dir={out}",
            "train.progress=false",
            "train.knn_every=0",
            "train.knn_max_train=5000",
            "train.knn_max_val=1000",
            # a fixed number of steps, so that every machine runs the same recipe (a budget would cut it to
            # what fits); 2 epochs gained 6.3 points on the tuning split (docs/learning.md)
            "train.budget_minutes=null",
            "optim.epochs=2",
        ],
    )
    run = pretrain_and_compare(cfg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return run.before, run.after, run.result, [r for r in records if "teacher_entropy" in r], cfg


@pytest.mark.slow
def test_short_cifar10_pretraining_is_healthy(cifar_run):
    """No non-finite step, no collapse (uniform: teacher entropy near ln K; one prototype: the mean teacher
    distribution far from uniform; the [CLS] features spread: KoLeo's purpose), and the features at least as
    useful as at initialisation. A collapsed run fails here: m=0.95 with batch 32 ends at entropy 0.995 ln K."""
    before, after, result, diagnostics, cfg = cifar_run
    log_k = math.log(cfg.dino.out_dim)
    last = diagnostics[-1]
    assert result.skipped_steps == 0 and math.isfinite(result.final_loss)
    assert last["teacher_entropy"] < 0.9 * log_k, last
    assert last["kl_to_uniform"] < 0.5 * log_k, last
    assert last["prototypes_in_use"] >= PROTOTYPES_IN_USE_FLOOR, last
    assert last["feature_std"] > 0.05, last  # 0.02 without KoLeo (collapsed towards a few directions)
    assert after >= before - 2


@pytest.mark.slow
def test_dino_learns_on_cifar10(cifar_run):
    """The 15-minute preset's recipe gains 3 points of 20-NN (2 standard errors of 1,000 queries) in 2 epochs.
    Measured on the tuning split at the earlier lr 0.01: 27.4 -> 33.7 %; here at the preset's 0.0025: 25.5 -> 35.5 %
    (docs/results.md)."""
    before, after, *_ = cifar_run
    assert after >= before + 3
