import json

import pytest
import torch

from conftest import TINY_OVERRIDES
from vitssl.api import build_trainer
from vitssl.checkpoints import load_checkpoint
from vitssl.config import load_config
from vitssl.errors import VitsslError
from vitssl.log import configure as configure_logging


@pytest.fixture(scope="module")
def image_folder(tiny_image_folder):
    return tiny_image_folder


def tiny_cfg(root, out, *extra):
    return load_config(
        None,
        [
            f"data.train={root}",
            *TINY_OVERRIDES,
            "dino.warmup_teacher_temp_epochs=1",
            "dino.freeze_last_layer=0.5",
            "optim.epochs=2",
            "optim.warmup_epochs=0.5",
            "train.log_every=1",
            "train.checkpoint_every=1000",
            "model.drop_path=0.1",  # exercises the RNG state in the resume test
            f"train.out_dir={out}",
            *extra,
        ],
    )


def losses(run_dir):
    return [
        json.loads(line)["loss"]
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]


def test_resume_continues_exactly(image_folder, tmp_path, capsys):
    configure_logging(0)  # the command configures the vitssl logger; the Python API leaves it to the caller
    straight = build_trainer(tiny_cfg(image_folder, tmp_path / "a")).fit()
    assert straight.steps == 12  # 24 images / 4 per step * 2 epochs
    first = build_trainer(tiny_cfg(image_folder, tmp_path / "b")).fit(stop_at_step=5)
    assert first.steps == 5 and (tmp_path / "b" / "last.pt").exists()
    capsys.readouterr()
    resumed = build_trainer(tiny_cfg(image_folder, tmp_path / "b")).fit()
    assert resumed.steps == 12
    assert f"vitssl: resuming {tmp_path / 'b'} at step 5 of 12" in capsys.readouterr().err
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    a = load_checkpoint(tmp_path / "a")["method"]
    b = load_checkpoint(tmp_path / "b")["method"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_checkpoint_is_weights_only_and_complete(image_folder, tmp_path):
    build_trainer(tiny_cfg(image_folder, tmp_path / "r", "optim.epochs=0.5")).fit()
    ckpt = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert {"method", "optimizer", "step", "rng", "config", "version"} <= set(ckpt)
    assert "loss_fn.center" in ckpt["method"] and "teacher.backbone.model.cls_token" in ckpt["method"]
    assert (tmp_path / "r" / "config.yaml").exists() and (tmp_path / "r" / "curves.png").exists()


def test_resume_with_another_recipe_is_refused(image_folder, tmp_path):
    build_trainer(tiny_cfg(image_folder, tmp_path / "r", "optim.epochs=0.5")).fit()
    before = (tmp_path / "r" / "last.pt").read_bytes()
    with pytest.raises(VitsslError, match=r"different config: optim.lr"):
        build_trainer(tiny_cfg(image_folder, tmp_path / "r", "optim.epochs=0.5", "optim.lr=0.1")).fit()
    assert (tmp_path / "r" / "last.pt").read_bytes() == before


def test_nonfinite_loss_is_skipped_then_stops_cleanly(image_folder, tmp_path):
    trainer = build_trainer(tiny_cfg(image_folder, tmp_path / "n", "train.max_nonfinite=3"))
    real_step = trainer.method.training_step
    calls = {"n": 0}

    def poisoned(batch, state):
        out = real_step(batch, state)
        calls["n"] += 1
        if calls["n"] == 2 or calls["n"] >= 4:  # one isolated NaN, then NaN for ever
            out.loss = out.loss * float("nan")
        return out

    trainer.method.training_step = poisoned
    weights = {}

    def snapshot(state):
        weights[state.step] = [p.detach().clone() for p in trainer.method.student.parameters()]

    real_after = trainer.method.after_optimizer_step
    trainer.method.after_optimizer_step = lambda state: (real_after(state), snapshot(state))
    with pytest.raises(VitsslError, match="not finite for 3 steps in a row"):
        trainer.fit()
    assert sorted(weights) == [0, 2]  # step 1 was skipped: no update, no EMA
    saved = load_checkpoint(tmp_path / "n")
    # steps 1, 3, 4, 5 were skipped; the run stops at step 5, the third bad step in a row
    assert saved["step"] == 5 and saved["skipped_steps"] == 4
    for p, q in zip(weights[2], (saved["method"][k] for k in saved["method"] if k.startswith("student.")), strict=True):
        assert torch.isfinite(q).all()
        assert torch.equal(p, q)


def test_too_small_dataset_error(image_folder, tmp_path):
    with pytest.raises(VitsslError, match="fewer than one optimiser step"):
        build_trainer(tiny_cfg(image_folder, tmp_path / "s", "data.batch_size=64"))
