import json

import torch

from vitssl.cli import main
from vitssl.eval.blocks import block_features, default_n_last_blocks
from vitssl.eval.linear import FAST_MODE_LABEL, LinearSettings, accuracy, make_linear_head, train_linear_on_features
from vitssl.models.backbones import build_backbone


def _clusters(n_per_class: int, num_classes: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(123)) * 3
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    return centres[y] + torch.randn(len(y), dim, generator=g), y


def test_linear_probe_separates_separable_features():
    train_x, train_y = _clusters(60, 5, 32, seed=0)
    val_x, val_y = _clusters(20, 5, 32, seed=1)
    s = LinearSettings(epochs=20, lr=0.1, batch_size=32)
    head, history = train_linear_on_features(train_x, train_y, val_x, val_y, 5, s, progress=False)
    assert len(history) == 20 and history[-1]["epoch"] == 20
    assert history[-1]["top1"] >= 99.0
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert head.weight.shape == (5, 32)


def test_linear_probe_at_chance_on_random_labels():
    x, _ = _clusters(50, 4, 16, seed=0)
    y = torch.randint(0, 4, (len(x),), generator=torch.Generator().manual_seed(5))
    vx, _ = _clusters(50, 4, 16, seed=1)
    vy = torch.randint(0, 4, (len(vx),), generator=torch.Generator().manual_seed(6))
    _, history = train_linear_on_features(x, y, vx, vy, 4, LinearSettings(epochs=5, lr=0.1), progress=False)
    assert history[-1]["top1"] < 50.0  # no signal, no accuracy: the probe cannot see the validation labels


def test_head_init_and_accuracy():
    head = make_linear_head(10, 3)
    assert head.bias.abs().sum() == 0 and 0.005 < head.weight.std() < 0.02
    logits = torch.tensor([[3.0, 2.0, 1.0], [0.0, 1.0, 2.0]])
    assert accuracy(logits, torch.tensor([0, 0])) == (50.0, 100.0)  # fewer than 5 classes: top-5 is top-3


def test_block_features_follow_dino_protocol():
    torch.manual_seed(0)
    backbone = build_backbone("vit_tiny", patch_size=4, img_size=16, depth=3).eval()
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        one = block_features(backbone, images, 1)
        three = block_features(backbone, images, 3)
        pooled = block_features(backbone, images, 2, avgpool=True)
        out = backbone(images)
    # the last block's [CLS] through the final norm is exactly the backbone's pooled feature
    torch.testing.assert_close(one, out.pooled)
    assert three.shape == (2, 3 * 192)
    torch.testing.assert_close(three[:, -192:], out.pooled)
    torch.testing.assert_close(pooled[:, -192:], out.tokens.mean(dim=1))
    assert default_n_last_blocks(backbone) == (3, False)  # ViT-S and smaller: n = 4 (capped by depth)


def test_linear_command_fast_mode(tiny_run, tiny_image_folder, capsys):
    code = main(
        ["linear", str(tiny_run), "--fast", "--epochs", "3", "--lr", "0.1", "--num-workers", "0", "--device", "cpu"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert FAST_MODE_LABEL in out and "final (epoch 3)" in out and "best" in out
    result = json.loads((tiny_run / "linear_fast.json").read_text())
    assert result["mode"] == FAST_MODE_LABEL and len(result["history"]) == 3
    assert result["final"]["epoch"] == 3 and result["best"]["top1"] >= result["final"]["top1"]
    head = torch.load(tiny_run / "linear_head_fast.pt", weights_only=True)
    assert head["state_dict"]["weight"].shape == (2, result["feature_dim"])


def test_linear_command_standard_mode(tiny_run, capsys):
    assert main(["linear", str(tiny_run), "--epochs", "2", "--batch-size", "8", "--num-workers", "0"]) == 0
    assert "standard" in capsys.readouterr().out
    assert len(json.loads((tiny_run / "linear.json").read_text())["history"]) == 2


def test_fast_lr_sweep_keeps_the_best_head(tiny_run, capsys):
    args = ["linear", str(tiny_run), "--fast", "--epochs", "3", "--lr", "1e-6", "0.5", "--num-workers", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "lr sweep" in out
    result = json.loads((tiny_run / "linear_fast.json").read_text())
    assert set(result["sweep"]) == {"1e-06", "0.5"}
    assert result["final"]["top1"] == max(result["sweep"].values())
    assert result["lr"] == float(max(result["sweep"], key=result["sweep"].get))


def test_sweep_needs_fast_mode(tiny_run, capsys):
    assert main(["linear", str(tiny_run), "--lr", "0.1", "0.01", "--num-workers", "0"]) == 2
    assert "--fast" in capsys.readouterr().err


def test_compare_init_probes_both_networks_into_their_own_files(tiny_run, capsys):
    for name in ("linear_fast.json", "linear_fast_init.json"):
        (tiny_run / name).unlink(missing_ok=True)
    args = ["linear", str(tiny_run), "--fast", "--epochs", "1", "--compare-init", "--num-workers", "0"]
    assert main(args) == 0
    assert capsys.readouterr().out.count("wrote ") == 2
    assert json.loads((tiny_run / "linear_fast.json").read_text())["at_init"] is False
    assert json.loads((tiny_run / "linear_fast_init.json").read_text())["at_init"] is True
