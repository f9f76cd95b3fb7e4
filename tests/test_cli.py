import re
import subprocess
import sys

import pytest

from vitssl.cli import build_parser, main


def test_every_option_has_help():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    assert {"pretrain", "knn"} <= set(subparsers)
    for name, sub in subparsers.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.dest} has no help text"


def test_config_errors_are_one_line_without_traceback(capsys):
    assert main(["pretrain", "configs/demo.yaml", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vitssl: error: unknown config key 'optim.lrr'") and "did you mean optim.lr" in err
    assert "\n" not in err and "Traceback" not in err


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["knn", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["knn", str(bad)]) == 2
    assert "corrupt or not a vitssl checkpoint" in capsys.readouterr().err


def test_missing_data_folder_is_a_clear_error(tmp_path, capsys):
    code = main(
        [
            "pretrain",
            f"data.train={tmp_path / 'missing'}",
            f"train.out_dir={tmp_path / 'run'}",
            "model.backbone=vit_tiny",
            "model.depth=1",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "missing" in err and "Traceback" not in err


def test_help_config_lists_keys(capsys):
    assert main(["pretrain", "--help-config"]) == 0
    out = capsys.readouterr().out
    assert "optim.lr = 0.0005" in out and "dino.momentum_teacher" in out


@pytest.mark.parametrize("args", [["--help"], ["pretrain", "--help"], ["knn", "--help"]])
def test_console_entry_point_runs(args):
    result = subprocess.run([sys.executable, "-m", "vitssl", *args], capture_output=True, text=True)
    assert result.returncode == 0 and "usage" in result.stdout


def _subparsers() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


# Flags whose value a later step checks before any work (with a one-line VitsslError of its own).
CHECKED_LATER = {("shards", "shard_size")}


def test_every_numeric_flag_is_range_checked_by_argparse():
    """No subcommand takes a bare int or float: each numeric flag has a range type from commands/_shared.py."""
    from vitssl.commands import _shared

    checked = {_shared.positive_int, _shared.non_negative_int, _shared.seed_int, _shared.finite_float}
    checked |= {_shared.positive_float, _shared.non_negative_float, _shared.unit_float, _shared.unit_below_one_float}
    checked |= {_shared.open_unit_float, _shared.device_name}
    for name, sub in _subparsers().items():
        for action in sub._actions:
            if action.type in (int, float):
                assert (name, action.dest) in CHECKED_LATER, f"vitssl {name} {action.option_strings} takes a bare type"
            if action.dest in ("device", "num_workers"):
                assert action.type in checked, f"vitssl {name} --{action.dest} is not checked"


MISSING_RUN = "/nonexistent/run"
IMAGE = "image.png"  # never opened: argparse refuses the flag first

# (argv, words of argparse's one-line error); every subcommand and every kind of argument type appears.
BAD_FLAGS = [
    (["knn", MISSING_RUN, "--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    (["knn", MISSING_RUN, "--num-workers", "-1"], "argument --num-workers: must be >= 0, got -1"),
    (["knn", MISSING_RUN, "--device", "tpu"], "argument --device: 'tpu' is not a device"),
    (["knn", MISSING_RUN, "--k", "0"], "argument --k: must be >= 1, got 0"),
    (["knn", MISSING_RUN, "--k", "20", "x"], "argument --k: expected an integer, got 'x'"),
    (["knn", MISSING_RUN, "--temperature", "nan"], "argument --temperature: expected a finite number"),
    (["knn", MISSING_RUN, "--max-train", "0"], "argument --max-train: must be >= 1"),
    (["linear", MISSING_RUN, "--epochs", "0"], "argument --epochs: must be >= 1"),
    (["linear", MISSING_RUN, "--lr", "0.1", "-1"], "argument --lr: must be > 0, got -1"),
    (["linear", MISSING_RUN, "--momentum", "2"], r"argument --momentum: must be in \[0, 1\], got 2"),
    (["linear", MISSING_RUN, "--weight-decay", "-1"], "argument --weight-decay: must be >= 0"),
    (["linear", MISSING_RUN, "--n-last-blocks", "0"], "argument --n-last-blocks: must be >= 1"),
    (["linear", MISSING_RUN, "--seed", "-1"], r"argument --seed: must be in \[0, 4294967295\]"),
    (["attention", MISSING_RUN, IMAGE, "--threshold", "1.5"], r"argument --threshold: must be in \[0, 1\]"),
    (["attention", MISSING_RUN, IMAGE, "--resize", "-3"], "argument --resize: must be >= 1"),
    (["attention", MISSING_RUN, "--score", "--max-images", "0"], "argument --max-images: must be >= 1"),
    (["segment", MISSING_RUN, "--size", "0"], "argument --size: must be >= 1"),
    (["segment", MISSING_RUN, "--lr", "inf"], "argument --lr: expected a finite number"),
    (["finetune", MISSING_RUN, "--min-lr", "-1"], "argument --min-lr: must be >= 0"),
    (["finetune", MISSING_RUN, "--warmup-epochs", "-1"], "argument --warmup-epochs: must be >= 0"),
    (["finetune", MISSING_RUN, "--layer-decay", "0"], r"argument --layer-decay: must be in \(0, 1\]"),
    (["finetune", MISSING_RUN, "--label-smoothing", "1"], r"argument --label-smoothing: must be in \[0, 1\)"),
    (["finetune", MISSING_RUN, "--mixup", "-0.5"], "argument --mixup: must be >= 0"),
    (["pca", MISSING_RUN, IMAGE, "--resize", "0"], "argument --resize: must be >= 1"),
    (["pca", MISSING_RUN, IMAGE, "--threshold", "nan"], "argument --threshold: expected a finite number"),
    (["reconstruct", MISSING_RUN, IMAGE, "--count", "0"], "argument --count: must be >= 1"),
    (["reconstruct", MISSING_RUN, IMAGE, "--device", "tpu"], "argument --device: 'tpu' is not a device"),
    (["correspond", MISSING_RUN, IMAGE, "--top", "0"], "argument --top: must be >= 1"),
    (["correspond", MISSING_RUN, IMAGE, "--jitter", "-1"], r"argument --jitter: must be in \[0, 1\]"),
    (["detect", MISSING_RUN, "--fpn-channels", "0"], "argument --fpn-channels: must be >= 1"),
    (["detect", MISSING_RUN, "--image-size", "0"], "argument --image-size: must be >= 1"),
    (["detect", MISSING_RUN, "--num-workers", "-1"], "argument --num-workers: must be >= 0"),
    (["shards", "in", "out", "--seed", "-1"], r"argument --seed: must be in \[0, 4294967295\]"),
    (["embed", MISSING_RUN, IMAGE, "--out", "f.npy", "--batch-size", "0"], "argument --batch-size: must be >= 1"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_FLAGS, ids=[" ".join(a[0:1] + a[-2:]) for a, _ in BAD_FLAGS])
def test_bad_flag_values_stop_argparse_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    *usage, last = err.strip().splitlines()
    assert re.fullmatch(f"vitssl {argv[0]}: error: {message}.*", last), err
    # nothing but argparse's usage (wrapped over lines) and the one error line
    assert usage[0].startswith("usage: ") and all(line.startswith(" ") for line in usage[1:]), err


@pytest.mark.parametrize(
    "override",
    ["model.patch_size=0", "model.patch_size=-8", "model.depth=-1", "model.drop_path=2", "dino.hidden_dim=0"]
    + ["dino.bottleneck_dim=-1", "optim.betas=[2,3]", "model.depth=0", "optim.min_lr=-1", "optim.weight_decay=-1"]
    + ["optim.warmup_epochs=-1", "optim.clip_grad=-1"],
)
def test_issue_11_pretrain_overrides_fail_before_any_work(override, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["pretrain", "configs/demo.yaml", override, "train.progress=false", f"train.out_dir={run}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    key = override.split("=")[0]
    assert err.startswith(f"vitssl: error: {key}") or err.startswith("vitssl: error: every value of " + key), err
    assert "\n" not in err and not run.exists()  # refused before the run folder was made


def test_knn_k_is_checked_against_the_memory_set(tiny_image_folder, tmp_path, capsys):
    from conftest import TINY_OVERRIDES

    run = tmp_path / "run"
    pretrain = ["pretrain", f"data.train={tiny_image_folder}", f"train.out_dir={run}", "optim.epochs=0.2"]
    assert main([*pretrain, *TINY_OVERRIDES]) == 0
    sets = ["--train", str(tiny_image_folder), "--val", str(tiny_image_folder), "--device", "cpu", "--num-workers", "0"]
    assert main(["knn", str(run), *sets, "--k", "5", "30"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "vitssl: error: --k 30 exceeds the 24 images of the memory set (--train); pass --k values <= 24 or a "
        "larger --train / --max-train"
    )
    assert not (run / "knn.json").exists()
    assert main(["knn", str(run), *sets, "--max-train", "8"]) == 2  # the defaults start at 10
    assert "has only 8 images, fewer than the smallest default k (10)" in capsys.readouterr().err


def test_default_ks_are_those_the_memory_set_allows():
    from vitssl.commands.knn import _neighbour_counts

    assert _neighbour_counts(None, 150) == (10, 20, 100)
    assert _neighbour_counts(None, 5000) == (10, 20, 100, 200)
    assert _neighbour_counts([1, 5], 5) == (1, 5)
