import json

import pytest
import torch
from PIL import Image

from conftest import TINY_OVERRIDES
from vitssl.cli import main
from vitssl.data.views.normalise import to_image
from vitssl.eval.correspondence import (
    FlipPairTransform,
    Matches,
    best_matches,
    draw_matches,
    flip_accuracy,
)


def test_best_matches_orders_by_similarity_and_finds_the_known_partner():
    # view 2 holds view 1's tokens in reverse order; token 2 of view 1 is a weaker (noisy) copy
    t1 = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, 0.0, 0.8]]])
    t2 = torch.tensor([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]])
    source, target, sim = best_matches(t1, t2, top=3)
    assert source.tolist() == [[0, 1, 2]] and target.tolist() == [[2, 1, 0]]
    torch.testing.assert_close(sim, torch.tensor([[1.0, 1.0, 0.8]]))
    source, _, _ = best_matches(t1, t2, top=10)  # top larger than the grid: all tokens
    assert source.shape == (1, 3)


def test_flip_accuracy_counts_mirrored_targets():
    grid = (2, 3)  # indices 0 1 2 / 3 4 5; mirrors 2 1 0 / 5 4 3
    source = torch.tensor([[0, 1, 3, 5]])
    assert flip_accuracy(source, torch.tensor([[2, 1, 5, 3]]), grid).item() == 1.0
    assert flip_accuracy(source, torch.tensor([[0, 1, 3, 3]]), grid).item() == 0.5


def test_a_mirror_symmetric_feature_map_scores_perfectly():
    # view 2 carries view 1's one-hot (row, column) codes at the mirrored positions: its only exact matches
    rows, cols = 3, 4
    feats1 = torch.zeros(1, rows * cols, 8)
    feats2 = torch.zeros(1, rows * cols, 8)
    for r in range(rows):
        for c in range(cols):
            feats1[0, r * cols + c, r] = 1.0
            feats1[0, r * cols + c, 3 + c] = 1.0
            feats2[0, r * cols + (cols - 1 - c), r] = 1.0
            feats2[0, r * cols + (cols - 1 - c), 3 + c] = 1.0
    source, target, _ = best_matches(feats1, feats2, top=10)
    assert flip_accuracy(source, target, (rows, cols)).item() == 1.0


def test_flip_pair_is_the_mirror_of_view_one_without_jitter():
    image = Image.fromarray(torch.randint(0, 256, (20, 28, 3), dtype=torch.uint8).numpy())
    pair = FlipPairTransform(16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), jitter=0.0)
    v1, v2 = pair(image, torch.Generator().manual_seed(0))
    torch.testing.assert_close(v2, v1.flip(-1))
    assert to_image(v1, (0.5,) * 3, (0.25,) * 3).size == (16, 16)


def test_drawing_has_both_views_side_by_side():
    m = Matches(torch.tensor([0, 3]), torch.tensor([3, 0]), torch.tensor([0.9, 0.8]), (2, 2), (2, 2))
    canvas = draw_matches(Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8)), m, display=64, gap=4)
    assert canvas.size == (132, 64)
    assert canvas.getpixel((0, 0)) != (0, 0, 0)  # a box outline was drawn in the first cell


@pytest.fixture(scope="module")
def tiny_esvit_run(tiny_image_folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("esvit_run")
    args = ["pretrain", f"data.train={tiny_image_folder}", f"train.out_dir={run}", "optim.epochs=1", "method=esvit"]
    assert main(args + TINY_OVERRIDES) == 0
    return run


def test_correspond_draws_and_scores_a_tiny_run(tiny_esvit_run, tiny_image_folder, capsys):
    images = sorted(tiny_image_folder.glob("a/*.png"))
    assert main(["correspond", str(tiny_esvit_run), str(images[0]), "--device", "cpu"]) == 0
    assert Image.open(tiny_esvit_run / "correspondence.png").size == (520, 256)
    assert main(["correspond", str(tiny_esvit_run), str(images[0]), str(images[1]), "--top", "3"]) == 0
    code = main(
        ["correspond", str(tiny_esvit_run), "--score", str(tiny_image_folder), "--compare-init", "--num-workers", "0"]
    )
    assert code == 0
    result = json.loads((tiny_esvit_run / "correspondence.json").read_text())
    assert result["images"] == 24 and 0 <= result["pretrained"] <= 100 and 0 <= result["init"] <= 100
    assert "init" in capsys.readouterr().out


def test_correspond_bad_inputs_give_one_line_errors(tiny_esvit_run, tmp_path, capsys):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    assert main(["correspond", str(tiny_esvit_run), str(not_an_image)]) == 2
    assert main(["correspond", str(tiny_esvit_run)]) == 2
    assert main(["correspond", str(tmp_path / "missing"), str(not_an_image)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vitssl: error")]
    assert len(errors) == 3
    assert "notes.png" in errors[0] and "one image" in errors[1] and "missing" in errors[2]
