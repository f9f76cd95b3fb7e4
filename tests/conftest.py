"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """``$VITSSL_TEST_DATA/cifar10`` (with train/ and test/ class folders); skips when the variable is unset.

    Set but missing is a failure, not a skip: a CI job that means to test on real data must not pass silently.
    """
    base = os.environ.get("VITSSL_TEST_DATA")
    if not base:
        pytest.skip("VITSSL_TEST_DATA is not set (the folder holding cifar10/train and cifar10/test)")
    root = Path(base) / "cifar10"
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        pytest.fail(f"VITSSL_TEST_DATA={base}, but {root}/train and {root}/test are not both folders")
    return root
