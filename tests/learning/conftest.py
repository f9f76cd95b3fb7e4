"""The shared step of the learning tests: score the network at initialisation, pretrain, score it again.

Every learning test compares the 20-NN top-1 of the trainer's online k-NN monitor (fixed, capped labelled
subsets) before and after a short pretraining; the trainer is built and run in one place so that changing how
a run is started touches only this file.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from vitssl.commands.training import build_trainer
from vitssl.config import PretrainConfig

K = 20  # the k-NN the learning tests compare: DINO's headline number


@dataclass
class PretrainComparison:
    """One short pretraining and its k-NN top-1 (percent) before and after.

    Attributes:
        trainer: The trainer after ``fit`` (its method holds the trained weights, ``trainer.knn`` the subsets).
        before: 20-NN top-1 of the evaluation backbone at initialisation.
        after: 20-NN top-1 after pretraining.
        result: What ``fit`` returned.
        init_backbone: A frozen copy of the evaluation backbone at initialisation, when asked for.
    """

    trainer: Any
    before: float
    after: float
    result: Any
    init_backbone: Any = None


def _pretrain_and_compare(cfg: PretrainConfig, keep_init: bool = False) -> PretrainComparison:
    trainer = build_trainer(cfg)
    assert trainer.knn is not None, "the learning tests need data.val and a labelled train set for the k-NN"
    init_backbone = copy.deepcopy(trainer.method.eval_backbone()).eval() if keep_init else None
    before = trainer.knn.evaluate(trainer.method.eval_backbone())[K]["top1"]
    result = trainer.fit()
    after = result.knn[K]["top1"]
    print(f"{K}-NN top-1: init {before:.2f}% -> pretrained {after:.2f}% ({result.steps} steps)")
    return PretrainComparison(trainer, before, after, result, init_backbone)


@pytest.fixture(scope="session")
def pretrain_and_compare() -> Callable[..., PretrainComparison]:
    """``pretrain_and_compare(cfg, keep_init=False)``: pretrain ``cfg`` and return a :class:`PretrainComparison`."""
    return _pretrain_and_compare
