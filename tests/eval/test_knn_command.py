import json

from conftest import TINY_OVERRIDES
from vitssl.cli import main


def test_knn_command_on_a_tiny_run(tiny_image_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(["pretrain", f"data.train={tiny_image_folder}", f"train.out_dir={run}", "optim.epochs=1", *TINY_OVERRIDES])
        == 0
    )
    code = main(
        [
            "knn",
            str(run),
            "--train",
            str(tiny_image_folder),
            "--val",
            str(tiny_image_folder),
            "--k",
            "1",
            "5",
            "--compare-init",
            "--pixels",
            "--num-workers",
            "0",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "pretrained" in out and "initialisation" in out and "raw pixels" in out
    results = json.loads((run / "knn.json").read_text())
    # memory == queries: the 1-NN of every image is itself, so top-1 must be 100% for both networks and the pixels
    assert all(results[name]["1"]["top1"] == 100.0 for name in ("pretrained", "init", "pixels"))
    assert 0.0 <= results["pretrained"]["5"]["top1"] <= 100.0
    assert (run / "knn_comparison.png").stat().st_size > 1000


def test_online_knn_logged_from_step_zero(tiny_image_folder, tmp_path):
    run = tmp_path / "run"
    assert (
        main(
            [
                "pretrain",
                f"data.train={tiny_image_folder}",
                f"data.val={tiny_image_folder}",
                f"train.out_dir={run}",
                "optim.epochs=1",
                "train.knn_every=3",
                "train.knn_k=5",
                *TINY_OVERRIDES,
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    knn_steps = [r["step"] for r in records if "knn_top1" in r]
    assert knn_steps == [0, 3, 6]
    assert json.loads((run / "knn_online.json").read_text())["k"] == 5
