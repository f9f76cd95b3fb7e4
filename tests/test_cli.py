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
