"""Learning tests for EsViT: a short CPU pretraining must beat the same network at initialisation on 20-NN top-1
(the bars of the DINO tests), and the trained network must find flipped regions more often than at init.

The synthetic run uses the EsViT demo (configs/esvit/demo.yaml): ViT-Tiny, patch 8, so the 4 x 4 patch tokens are
the regions. Measured wall times are in the README.
"""

import json
import math
from pathlib import Path

import pytest
import torch

from vitssl.config import load_config
from vitssl.data.loading.loader import build_loader
from vitssl.data.sources.folders import ImageFolderDataset
from vitssl.data.sources.named import resolve_dataset
from vitssl.eval.correspondence import FlipPairTransform, flip_correspondence_accuracy

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory, pretrain_and_compare):
    out = tmp_path_factory.mktemp("esvit_synthetic")
    cfg = load_config(
        CONFIGS / "esvit" / "demo.yaml",
        [
            f"train.out_dir={out}",
            "train.progress=false",
            "train.knn_every=0",
            # DINO's default colour jitter, as measured here before the demo strengthened it for DINO's attention
            *["crops.jitter_p=0.8", "crops.saturation=0.2", "crops.hue=0.1", "crops.grayscale_p=0.2"],
        ],
    )
    return pretrain_and_compare(cfg, keep_init=True)


@pytest.mark.slow
def test_esvit_learns_on_synthetic_shapes(synthetic_run):
    result = synthetic_run.result
    assert math.isfinite(result.final_loss) and result.skipped_steps == 0
    assert synthetic_run.after >= synthetic_run.before + 10


@pytest.mark.slow
def test_trained_regions_correspond_better_than_at_init(synthetic_run):
    """Flip-correspondence (docs/methods.md 2.4) on 500 held-out synthetic images, view 2 = flip + jitter 0.2."""
    trainer, init_backbone = synthetic_run.trainer, synthetic_run.init_backbone
    cfg = trainer.cfg
    root, _ = resolve_dataset("synthetic:test", "train", cfg.data.cache_dir)
    pairs = FlipPairTransform(cfg.crops.global_size, cfg.data.mean, cfg.data.std, jitter=0.2)
    dataset = ImageFolderDataset(root, labelled=False, transform=pairs, max_images=500, config_key="--score")
    loader = build_loader(dataset, 100, 0, seed=0, shuffle=False, drop_last=False)
    cpu = torch.device("cpu")
    trained = flip_correspondence_accuracy(trainer.method.eval_backbone(), loader, cpu)
    init = flip_correspondence_accuracy(init_backbone, loader, cpu)
    print(f"flip-correspondence top-10: init {init:.1f}% -> pretrained {trained:.1f}%")
    assert trained >= init + 5


@pytest.fixture(scope="module")
def cifar_run(cifar10_root, tmp_path_factory, pretrain_and_compare):
    """One short EsViT pretraining on CIFAR-10 with the 15-minute preset (ViT-Mini, patch 8, KoLeo; 1.5 epochs of
    fixed length instead of the preset's wall-clock budget, about 4.5 minutes on 2 cores), shared below."""
    out = tmp_path_factory.mktemp("esvit_cifar")
    cfg = load_config(
        CONFIGS / "esvit" / "vit_mini_cifar10_15min.yaml",
        [
            f"data.train={cifar10_root / 'train'}",
            f"data.val={cifar10_root / 'test'}",
            f"train.out_dir={out}",
            "train.progress=false",
            "train.knn_every=0",
            "train.knn_max_train=5000",
            "train.knn_max_val=1000",
            # a fixed number of steps on every machine (a budget would cut the run to what fits); 1.5 epochs
            # gained 6.0 points on the tuning split (docs/learning.md)
            "train.budget_minutes=null",
            "optim.epochs=1.5",
        ],
    )
    run = pretrain_and_compare(cfg)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return run.before, run.after, run.result, [r for r in records if "teacher_entropy" in r], cfg


@pytest.mark.slow
def test_short_cifar10_esvit_pretraining_is_healthy(cifar_run):
    """No non-finite step, neither head collapsed, region matches spread over the teacher's tokens."""
    before, after, result, diagnostics, cfg = cifar_run
    log_k = math.log(cfg.dino.out_dim)
    last = diagnostics[-1]
    assert result.skipped_steps == 0 and math.isfinite(result.final_loss)
    assert last["teacher_entropy"] < 0.9 * log_k and last["region_teacher_entropy"] < 0.9 * log_k, last
    assert last["kl_to_uniform"] < 0.5 * log_k, last
    # every student token choosing the same teacher token would give 1/16 (4 x 4 regions); the tuning run ended at 0.32
    assert last["match_coverage"] > 2 / 16, last
    # the view feature must not collapse (lr 0.01 without KoLeo did: feature_std 0.002; the tuning run ended at 0.10)
    assert last["feature_std"] > 0.05, last
    assert after >= before - 2


@pytest.mark.slow
def test_esvit_learns_on_cifar10(cifar_run):
    """The 15-minute preset's recipe gains 3 points of 20-NN (2 standard errors of 1,000 queries) in 1.5 epochs.
    Measured on the tuning split: 27.4 -> 33.4 % (docs/learning.md)."""
    before, after, *_ = cifar_run
    assert after >= before + 3
