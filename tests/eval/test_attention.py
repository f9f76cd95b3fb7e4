import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.models.swin_transformer import window_partition

from vitssl.cli import main
from vitssl.errors import VitsslError
from vitssl.eval.attention import jaccard, keep_mass, swin_query_attention, vit_cls_attention
from vitssl.models.backbones import Backbone, build_backbone


def _tiny_swin() -> Backbone:
    torch.manual_seed(0)
    model = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        num_classes=0,
        img_size=32,
        embed_dim=24,
        depths=(2, 2),
        num_heads=(1, 2),
        window_size=2,
    )
    return Backbone(model.eval())


def test_vit_cls_maps_sum_to_one_per_head_on_any_grid():
    torch.manual_seed(0)
    backbone = build_backbone("vit_tiny", patch_size=4, img_size=16, depth=2).eval()
    maps = vit_cls_attention(backbone, torch.randn(2, 3, 12, 20))  # not the training size, not square
    assert maps.shape == (2, 3, 3, 5)
    torch.testing.assert_close(maps.sum(dim=(-2, -1)), torch.ones(2, 3))
    assert (maps >= 0).all()


def test_vit_cls_maps_match_the_unfused_attention():
    torch.manual_seed(0)
    backbone = build_backbone("vit_tiny", patch_size=4, img_size=16, depth=2).eval()
    images = torch.randn(1, 3, 16, 16)
    attn = backbone.model.blocks[-1].attn
    attn.fused_attn = False  # timm's explicit path: its softmax output goes through attn_drop (identity in eval)
    seen = []
    handle = attn.attn_drop.register_forward_hook(lambda _m, _a, out: seen.append(out))
    backbone.model.forward_features(images)
    handle.remove()
    reference = seen[0][:, :, 0, 1:]
    reference = (reference / reference.sum(-1, keepdim=True)).reshape(1, 3, 4, 4)
    torch.testing.assert_close(vit_cls_attention(backbone, images), reference)


@pytest.mark.parametrize("fraction", [0.1, 0.6, 0.9, 1.0])
def test_mask_keeps_the_requested_mass_and_no_more_than_needed(fraction):
    maps = torch.rand(4, 3, 6, 7, generator=torch.Generator().manual_seed(1)) ** 3
    maps = maps / maps.sum(dim=(-2, -1), keepdim=True)
    masks = keep_mass(maps, fraction)
    kept = (maps * masks).sum(dim=(-2, -1))
    assert (kept >= fraction - 1e-6).all()
    # minimal: dropping the weakest kept patch falls below the fraction
    weakest = torch.where(masks, maps, torch.full_like(maps, float("inf"))).flatten(-2).min(-1).values
    assert (kept - weakest < fraction).all()


def test_mask_rejects_bad_fraction():
    with pytest.raises(VitsslError):
        keep_mass(torch.ones(1, 2, 2), 1.5)


def test_jaccard():
    a = torch.tensor([[True, True], [False, False]])
    b = torch.tensor([[True, False], [True, False]])
    assert jaccard(a, b).item() == pytest.approx(1 / 3)
    assert jaccard(a, a).item() == 1.0
    assert jaccard(torch.zeros(2, 2, dtype=torch.bool), torch.zeros(2, 2, dtype=torch.bool)).item() == 1.0


@pytest.mark.parametrize("query", [(0, 0), (1, 2), (3, 3), None])
def test_swin_query_attention_covers_exactly_the_shifted_window(query):
    backbone = _tiny_swin()
    images = torch.randn(2, 3, 32, 32)
    maps = swin_query_attention(backbone, images, query)
    assert maps.shape == (2, 2, 4, 4)  # last stage: 4 x 4 tokens, 2 heads
    torch.testing.assert_close(maps.sum(dim=(-2, -1)), torch.ones(2, 2))
    # Independent bookkeeping: roll a map of token ids as the block does, partition it into windows, and
    # find the window holding the query; those are the only tokens the query can attend to.
    block = backbone.model.layers[-1].blocks[-1]
    assert block.shift_size == (1, 1)  # the case that needs the roll
    qr, qc = query or (2, 2)
    ids = torch.arange(16).view(1, 4, 4, 1)
    rolled = torch.roll(ids, shifts=(-1, -1), dims=(1, 2))
    windows = window_partition(rolled, block.window_size).reshape(-1, 4)
    window = next(w for w in windows if qr * 4 + qc in w.tolist())
    nonzero = set(torch.nonzero(maps[0, 0].flatten() > 0).flatten().tolist())
    assert nonzero <= set(window.tolist()) and len(nonzero) >= 3


def test_swin_attention_matches_timm_softmax():
    backbone = _tiny_swin()
    images = torch.randn(1, 3, 32, 32)
    attn = backbone.model.layers[-1].blocks[-1].attn
    attn.fused_attn = False
    seen = []
    handle = attn.softmax.register_forward_hook(lambda _m, _a, out: seen.append(out))
    backbone.model.forward_features(images)
    handle.remove()
    probs = seen[0]  # (windows, heads, 4, 4)
    maps = swin_query_attention(backbone, images, (0, 0))
    # query (0, 0) with shift 1 sits at rolled (3, 3): the last window, its last position
    torch.testing.assert_close(maps[0].flatten(1).sort(-1).values[:, -4:], probs[-1, :, 3].sort(-1).values)


def test_attention_command_any_size_png_and_npy(tiny_run, tmp_path, capsys):
    image = tmp_path / "odd size.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (29, 37, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "att"
    assert main(["attention", str(tiny_run), str(image), "--out", str(out), "--device", "cpu"]) == 0
    maps = np.load(out / "odd size_attention.npy")
    assert maps.shape == (3, 7, 9)  # 3 heads; 29 x 37 px cropped to 28 x 36, patch 4
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert (out / "odd size_attention.png").stat().st_size > 5000


def test_attention_score_prints_pretrained_and_init(tiny_run, capsys):
    args = ["attention", str(tiny_run), "--score", "--compare-init", "--max-images", "40", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "at initialisation" in out and "pretrained" in out and "Jaccard" in out
    assert (tiny_run / "attention_score.json").is_file()


def test_synthetic_stands_for_one_test_image_per_class(tiny_run, tmp_path):
    """``synthetic`` as the image argument (how the demos draw their pictures): ten images, one per class (one
    image, matched with its flip, for ``correspond``)."""
    out = tmp_path / "att"
    assert main(["attention", str(tiny_run), "synthetic", "--out", str(out), "--device", "cpu"]) == 0
    assert len(list(out.glob("*_attention.png"))) == 10 and len(list(out.glob("*_attention.npy"))) == 10
    pca = tmp_path / "pca.png"
    assert main(["pca", str(tiny_run), "synthetic", "--out", str(pca), "--device", "cpu"]) == 0
    assert np.load(pca.with_suffix(".npy")).shape[0] == 10
    matches = tmp_path / "correspondence.png"
    assert main(["correspond", str(tiny_run), "synthetic", "--out", str(matches), "--device", "cpu"]) == 0
    assert matches.stat().st_size > 1000
