"""Bad inputs to the evaluation commands end in one line that names the problem, never a traceback."""

import pytest
import torch

from vitssl.checkpoints import checksum
from vitssl.cli import main

COMMANDS = {
    "linear": ["--fast"],
    "finetune": [],
    "attention": ["--score"],
    "pca": ["IMAGE"],
    "segment": [],
}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("vitssl: error: "), err
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "ok.png"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(path)
    return path


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_missing_checkpoint(command, tmp_path, image, capsys):
    extra = [str(image) if a == "IMAGE" else a for a in COMMANDS[command]]
    assert main([command, str(tmp_path / "nowhere"), *extra, "--device", "cpu"]) == 2
    assert "does not exist" in _one_line_error(capsys)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_checkpoint_of_another_architecture(command, tiny_run, tmp_path, image, capsys):
    ckpt = torch.load(tiny_run / "last.pt", weights_only=True)
    ckpt["config"]["model"]["depth"] = 5  # the weights are those of a 2-block network
    ckpt["config"]["model"]["patch_size"] = 8
    ckpt["checksum"] = checksum(ckpt)  # a consistent file: the mismatch must be caught, not the edit
    bad = tmp_path / "other_arch.pt"
    torch.save(ckpt, bad)
    extra = [str(image) if a == "IMAGE" else a for a in COMMANDS[command]]
    assert main([command, str(bad), *extra, "--device", "cpu"]) == 2
    assert "does not match" in _one_line_error(capsys)


def test_a_foreign_checkpoint(tmp_path, capsys):
    foreign = tmp_path / "timm.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    assert main(["linear", str(foreign), "--fast"]) == 2
    assert "no known layout" in _one_line_error(capsys)  # a foreign file is read as a SOURCE, named as unknown


@pytest.mark.parametrize("command", ["attention", "pca"])
def test_file_that_is_not_an_image(command, tiny_run, tmp_path, capsys):
    fake = tmp_path / "notes.png"
    fake.write_text("this is text, not pixels")
    assert main([command, str(tiny_run), str(fake), "--device", "cpu"]) == 2
    assert "notes.png" in _one_line_error(capsys)


@pytest.mark.parametrize("command", ["attention", "pca"])
def test_missing_image(command, tiny_run, tmp_path, capsys):
    assert main([command, str(tiny_run), str(tmp_path / "gone.jpg"), "--device", "cpu"]) == 2
    assert "gone.jpg does not exist" in _one_line_error(capsys)


def test_attention_without_work(tiny_run, capsys):
    assert main(["attention", str(tiny_run)]) == 2
    assert "nothing to do" in _one_line_error(capsys)


def test_report_of_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a vitssl run folder" in _one_line_error(capsys)


def test_huge_image_asks_for_a_smaller_max_side_that_works(tiny_run, tmp_path, capsys):
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("RGB", (300, 260)).save(big)  # 75 x 65 patches of 4 px: more than 4096
    assert main(["attention", str(tiny_run), str(big), "--device", "cpu"]) == 2
    message = _one_line_error(capsys)
    suggested = message.split("--max-side ")[1].split()[0]
    assert int(suggested) < 300
    out = ["--out", str(tmp_path), "--device", "cpu"]
    assert main(["attention", str(tiny_run), str(big), "--max-side", suggested, *out]) == 0
