"""The package works outside the clone: presets ship inside it and are addressable by name, and a wheel built
from this tree, installed into a folder of its own, lists them and trains one from another working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vitssl.commands.presets import format_presets
from vitssl.config import load_config
from vitssl.config.presets import list_presets, presets_dir, resolve_config
from vitssl.errors import VitsslError

ROOT = Path(__file__).resolve().parents[1]


def test_every_preset_has_a_name_and_a_one_sentence_summary():
    presets = {p.name: p for p in list_presets()}
    assert {"demo", "dino/vit_small_imagenet", "sit/vit_base_stl10", "esvit/swin_tiny_imagenet"} <= set(presets)
    for preset in presets.values():
        assert preset.summary, f"{preset.name} has no '# Run:' summary"
        assert "\n" not in preset.summary
    assert presets["dino/vit_mini_cifar10_15min"].measured.startswith("CIFAR-10 20-NN 28.5 % at init -> 47.2 %")


def test_presets_command_prints_one_line_per_preset():
    lines = format_presets().splitlines()
    assert len(lines) == len(list_presets())
    assert any(line.startswith("dino/vit_small_imagenet ") and "ViT-S/16" in line for line in lines)


def test_a_preset_loads_by_name_as_by_path():
    by_name = load_config("dino/vit_small_imagenet", ["train.out_dir=/tmp/x"])
    by_path = load_config(str(ROOT / "configs" / "dino" / "vit_small_imagenet.yaml"), ["train.out_dir=/tmp/x"])
    assert by_name == by_path
    demo = (presets_dir() / "demo.yaml").resolve()
    assert resolve_config("demo").resolve() == resolve_config("configs/demo.yaml").resolve() == demo


def test_an_unknown_preset_is_one_line_with_the_closest_names():
    with pytest.raises(
        VitsslError, match=r"does not exist, as a file or as a preset name; did you mean dino/vit_small_imagenet"
    ):
        resolve_config("dino/vit_smal_imagenet")


def test_the_clone_reaches_the_presets_through_configs():
    assert (ROOT / "configs").resolve() == (ROOT / "src" / "vitssl" / "presets").resolve()


@pytest.mark.slow
def test_wheel_installed_elsewhere_lists_and_trains_a_preset_by_name(tmp_path):
    """Build the wheel (no network: this tree, no dependencies), install it into a target folder, and run it
    from a folder outside the clone with only that target on the path for vitssl (dependencies from this
    environment)."""
    wheels, target, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    work.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(wheels)], check=True)
    (wheel,) = wheels.glob("vitssl-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(target)}

    def vitssl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "vitssl", *args], cwd=work, env=env, capture_output=True, text=True, timeout=600
        )

    where = subprocess.run(
        [sys.executable, "-c", "import vitssl; print(vitssl.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(target)), where.stdout + where.stderr
    listed = vitssl("presets")
    assert listed.returncode == 0, listed.stderr
    assert "dino/vit_small_imagenet" in listed.stdout
    # The demo preset by name, cut to a few steps on a few images so that the test stays short.
    run = vitssl(
        "pretrain",
        "demo",
        "optim.epochs=1",
        "data.max_images=64",
        "data.batch_size=32",
        "data.val=null",
        "train.out_dir=run",
        "data.cache_dir=cache",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert (work / "run" / "last.pt").is_file() and (work / "run" / "config.yaml").is_file()
