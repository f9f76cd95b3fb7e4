"""The HTML run report: its content, and that it renders with its pictures in a real (headless) browser."""

import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_OVERRIDES
from vitssl.cli import main
from vitssl.report.page import build_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def reported_run(tiny_image_folder, tmp_path_factory):
    """A tiny run with a k-NN result and attention pictures, and its report."""
    run = tmp_path_factory.mktemp("report") / "run"
    args = ["pretrain", f"data.train={tiny_image_folder}", f"data.val={tiny_image_folder}", f"train.out_dir={run}"]
    assert (
        main([*args, "optim.epochs=1", "train.log_every=1", "train.knn_every=2", "train.knn_k=3", *TINY_OVERRIDES]) == 0
    )
    image = run.parent / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(image)
    assert main(["attention", str(run), str(image), "--device", "cpu"]) == 0
    knn = ["knn", str(run), "--train", str(tiny_image_folder), "--val", str(tiny_image_folder), "--k", "3"]
    assert main([*knn, "--num-workers", "0", "--device", "cpu"]) == 0
    # a SiT run's reconstruction grid (vitssl reconstruct) is shown too; any PNG stands in for it here
    shutil.copyfile(next((run / "attention").glob("*.png")), run / "reconstruction.png")
    assert main(["report", str(run)]) == 0
    return run


def test_report_content(reported_run):
    page = reported_run / "report" / "index.html"
    text = page.read_text()
    for needle in ("Resolved config", "Training curves", "Evaluation results", "knn.json", "Pictures", "method: dino"):
        assert needle in text
    sources = re.findall(r'<img src="([^"]+)"', text)
    assert any(s.startswith("curve_loss") for s in sources) and any("attention" in s for s in sources)
    assert any(s.startswith("curve_knn") for s in sources) and any(s.startswith("curve_lr") for s in sources)
    assert "pic_reconstruction.png" in sources
    for src in sources:  # every picture sits next to the page: the folder is self-contained
        assert (page.parent / src).stat().st_size > 1000
    assert "http://" not in text and "https://" not in text and "<script" not in text


def test_report_is_rebuilt_idempotently(reported_run, tmp_path):
    first = build_report(reported_run, tmp_path / "a").read_text()
    second = build_report(reported_run, tmp_path / "b").read_text()
    assert first == second


def test_report_renders_with_its_images_in_a_headless_browser(reported_run, tmp_path):
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        pytest.skip("no Chromium/Chrome installed (Debian: apt-get install chromium; .ci/run installs it)")
    folder = reported_run / "report"
    page = (folder / "index.html").read_text()
    n_images = page.count("<img ")
    # A probe page next to the report: after loading, it writes the number of decoded images into the title.
    probe = page.replace(
        "</body>",
        "<script>window.addEventListener('load', () => { const imgs = Array.from(document.images); "
        "document.title = 'LOADED ' + imgs.filter(i => i.complete && i.naturalWidth > 0).length + ' OF ' + "
        "imgs.length + ' HEIGHT ' + document.body.scrollHeight; });</script></body>",
    )
    (folder / "probe.html").write_text(probe)
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
           (folder / "probe.html").as_uri()]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    match = re.search(r"<title>LOADED (\d+) OF (\d+) HEIGHT (\d+)</title>", result.stdout)
    assert match, f"the page did not finish loading in {browser}: {result.stderr[-500:]}"
    loaded, total, height = map(int, match.groups())
    assert total == n_images >= 5 and loaded == total
    assert height > 1000  # laid out: curves, tables and pictures take room
    screenshot = tmp_path / "report.png"
    subprocess.run([*cmd[:-2], f"--screenshot={screenshot}", "--window-size=1200,1600", cmd[-1]],
                   capture_output=True, timeout=120)  # fmt: skip
    assert screenshot.stat().st_size > 20000  # a page of pictures, not a blank one
