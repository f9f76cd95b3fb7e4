"""SiT corruptions and views: each corruption touches about the configured area and nothing else; the views are
deterministic, rotated by their label and corrupted only inside their masks."""

import pytest
import torch
from PIL import Image

from vitssl.data.seeding import sample_generator
from vitssl.data.views.crop_ops import Draws
from vitssl.data.views.multicrop import CropSpec
from vitssl.errors import VitsslError
from vitssl.methods.sit.corruptions import (
    BlurPatch,
    ColourDistortion,
    CorruptionPipeline,
    GrayscalePatch,
    RandomDrop,
    RandomReplace,
    replace_in_batch,
)
from vitssl.methods.sit.views import SiTCollate, SiTViewTransform, rotate

SIDE = 40


def _image(seed: int = 0) -> torch.Tensor:
    return torch.rand(3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed))


def _apply(corruption, seed: int):
    gen = sample_generator(7, 0, seed)
    return corruption(_image(seed), Draws(gen), gen)


def _bounding_box(mask: torch.Tensor) -> tuple[int, int]:
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


@pytest.mark.parametrize("corruption", [GrayscalePatch(side=(0.1, 0.5)), BlurPatch(side=(0.1, 0.5), sigma=(2.0, 3.0))])
def test_single_rectangle_corruptions_touch_one_rectangle_of_the_configured_size(corruption):
    for seed in range(30):
        image = _image(seed)
        out, mask = _apply(corruption, seed)
        h, w = _bounding_box(mask)
        assert int(mask.sum()) == h * w  # one solid rectangle
        assert round(0.1 * SIDE) <= h <= round(0.5 * SIDE) and round(0.1 * SIDE) <= w <= round(0.5 * SIDE)
        assert torch.equal(out[:, ~mask], image[:, ~mask])  # bit-identical outside
        assert not torch.equal(out[:, mask], image[:, mask])


def test_grayscale_patch_is_the_channel_mean():
    out, mask = _apply(GrayscalePatch(), 3)
    inside = out[:, mask]
    assert torch.allclose(inside[0], inside[1]) and torch.allclose(inside[1], inside[2])
    assert torch.allclose(inside[0], _image(3).mean(0)[mask])


@pytest.mark.parametrize("fill", ["noise", "zeros"])
def test_random_drop_covers_the_drawn_area_and_nothing_else(fill):
    mean = (0.4, 0.5, 0.6)
    drop = RandomDrop(side=(0.05, 0.25), area=(0.3, 0.3), fill=fill, mean=mean, std=(0.2, 0.2, 0.2))
    fractions = []
    for seed in range(40):
        image = _image(seed)
        out, mask = _apply(drop, seed)
        fraction = mask.float().mean().item()
        fractions.append(fraction)
        # rectangles are added until 30 % is reached; the last one adds at most 25 % x 25 % of the image
        assert 0.3 <= fraction <= 0.3 + 0.25**2 + 1e-6
        assert torch.equal(out[:, ~mask], image[:, ~mask])
        if fill == "zeros":
            assert torch.allclose(out[:, mask], torch.tensor(mean).view(3, 1).expand(3, int(mask.sum())))
    assert sum(fractions) / len(fractions) == pytest.approx(0.32, abs=0.03)


def test_random_drop_area_range_is_drawn_uniformly():
    drop = RandomDrop(side=(0.05, 0.1), area=(0.0, 0.3))
    fractions = [_apply(drop, seed)[1].float().mean().item() for seed in range(200)]
    # target uniform in [0, 0.3] (mean 0.15) plus at most one small rectangle (<= 1 %) of overshoot
    assert 0.13 <= sum(fractions) / len(fractions) <= 0.18
    assert min(fractions) < 0.03 and max(fractions) > 0.27


def test_random_replace_draws_its_mask_and_the_batch_step_pastes_the_next_image():
    replace = RandomReplace(side=(0.05, 0.25), area=(0.2, 0.2))
    out, mask = _apply(replace, 0)
    assert torch.equal(out, _image(0))  # one image alone: nothing to copy from yet
    assert 0.2 <= mask.float().mean().item() <= 0.2 + 0.25**2 + 1e-6
    views = torch.stack([_image(i) for i in range(3)])
    donors = views + 10  # distinguishable
    masks = torch.stack([_apply(replace, i)[1] for i in range(3)])
    out = replace_in_batch(views, donors, masks)
    for i in range(3):
        m = masks[i]
        assert torch.equal(out[i][:, m], donors[(i + 1) % 3][:, m])
        assert torch.equal(out[i][:, ~m], views[i][:, ~m])
    assert torch.equal(replace_in_batch(views[:1], donors[:1], masks[:1]), views[:1])


def test_colour_distortion_touches_the_whole_view():
    out, mask = _apply(ColourDistortion(p=1.0, strength=0.4), 1)
    assert bool(mask.all()) and out.shape == (3, SIDE, SIDE)
    assert out.min() >= 0 and out.max() <= 1 and not torch.equal(out, _image(1))


def test_corruptions_are_deterministic_per_generator():
    pipe = CorruptionPipeline([GrayscalePatch(), BlurPatch(), RandomDrop(), RandomReplace()])
    a = pipe(_image(), Draws(sample_generator(1, 2, 3)), sample_generator(1, 2, 3))
    b = pipe(_image(), Draws(sample_generator(1, 2, 3)), sample_generator(1, 2, 3))
    c = pipe(_image(), Draws(sample_generator(1, 2, 4)), sample_generator(1, 2, 4))
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
    assert not torch.equal(a.image, c.image)


def test_pipeline_probabilities_and_the_exclusive_replace():
    never = CorruptionPipeline([GrayscalePatch(p=0.0), RandomDrop(p=0.0)])
    result = never(_image(), Draws(sample_generator(0, 0, 0)), sample_generator(0, 0, 0))
    assert not result.mask.any() and torch.equal(result.image, _image())
    either = CorruptionPipeline([RandomDrop(p=1.0, area=(0.5, 0.5)), RandomReplace(p=1.0, area=(0.3, 0.3))], True)
    result = either(_image(), Draws(sample_generator(0, 0, 0)), sample_generator(0, 0, 0))
    assert not result.mask.any() and result.replace_mask.any()  # the replace won, so no drop


def test_bad_settings_raise_clear_errors():
    with pytest.raises(VitsslError, match="probability"):
        GrayscalePatch(p=1.5)
    with pytest.raises(VitsslError, match="odd"):
        BlurPatch(kernel=(4, 8))
    with pytest.raises(VitsslError, match="area"):
        RandomDrop(area=(0.5, 0.2))
    with pytest.raises(VitsslError, match="fill"):
        RandomDrop(fill="ones")


def _transform(rotations=(0, 1, 2, 3), corruptions=None):
    crop = CropSpec(size=16, scale=(0.5, 1.0))
    pipe = corruptions or CorruptionPipeline([GrayscalePatch(), BlurPatch(), RandomDrop(), RandomReplace()])
    return SiTViewTransform([crop, crop], pipe, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), rotations=rotations)


def _pil(seed: int = 0) -> Image.Image:
    pixels = torch.randint(0, 256, (24, 24, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def test_rotating_a_target_back_by_its_label_gives_the_unrotated_view():
    seen = set()
    for index in range(20):
        rotated = _transform()(_pil(index), sample_generator(0, 0, index))
        upright = _transform(rotations=(0, 0, 0, 0))(_pil(index), sample_generator(0, 0, index))
        for v in range(2):
            k = rotated["rotations"][v]
            seen.add(k)
            assert torch.equal(rotate(rotated["targets"][v], -k), upright["targets"][v])
            assert upright["rotations"][v] == 0
    assert seen == {0, 1, 2, 3}


def test_views_differ_from_targets_only_inside_the_masks():
    out = _transform()(_pil(), sample_generator(0, 0, 5))
    for view, target, mask in zip(out["views"], out["targets"], out["masks"], strict=True):
        assert view.shape == target.shape == (3, 16, 16) and mask.shape == (16, 16)
        assert torch.equal(view[:, ~mask], target[:, ~mask])
        assert mask.any()


def test_collate_stacks_view_major_and_replaces_from_the_next_image():
    pipe = CorruptionPipeline([RandomReplace(area=(0.3, 0.3))])
    transform = _transform(corruptions=pipe)
    samples = [
        {"views": transform(_pil(i), sample_generator(0, 0, i)), "label": i, "index": i, "skipped": 0} for i in range(4)
    ]
    batch = SiTCollate("next")(samples)
    assert len(batch.views) == 2 and batch.views[0].shape == (4, 3, 16, 16)
    assert batch.rotations[1].tolist() == [s["views"]["rotations"][1] for s in samples]
    for v in range(2):
        views, targets, masks = batch.views[v], batch.targets[v], batch.masks[v]
        for i in range(4):
            m = masks[i]
            assert m.any()
            assert torch.equal(views[i][:, m], targets[(i + 1) % 4][:, m])
            assert torch.equal(views[i][:, ~m], targets[i][:, ~m])
    single = SiTCollate("next")(samples[:1])
    assert not single.masks[0].any() and torch.equal(single.views[0], single.targets[0])


def test_corner_placement_clips_rectangles_at_the_border_like_the_authors():
    # The authors' geometry (docs/methods.md 3.1): top-left corner anywhere, the rectangle clipped at the right and
    # bottom borders. With sides in (0.05, 1) a grey patch then covers about 0.35^2 = 0.12 of the view on average,
    # against 0.525^2 = 0.28 when every rectangle is placed inside (vitssl 0.1's "inside").
    areas = {}
    for placement in ("corner", "inside"):
        patch = GrayscalePatch(side=(0.05, 1.0), placement=placement)
        masks = [_apply(patch, seed)[1] for seed in range(400)]
        for mask in masks:
            h, w = _bounding_box(mask)
            assert int(mask.sum()) == h * w  # still one solid rectangle
        areas[placement] = sum(float(m.float().mean()) for m in masks) / len(masks)
    assert areas["corner"] == pytest.approx(0.12, abs=0.025)
    assert areas["inside"] == pytest.approx(0.28, abs=0.035)
    clipped = [_apply(BlurPatch(side=(0.9, 1.0), placement="corner"), seed)[1] for seed in range(20)]
    assert any(bool(m[-1].any()) and int(m.sum()) < 0.8 * SIDE * SIDE for m in clipped)  # cut by the border


def test_corner_placement_still_reaches_the_drawn_area_for_drop_and_replace():
    for corruption in (
        RandomDrop(area=(0.3, 0.3), placement="corner"),
        RandomReplace(area=(0.3, 0.3), placement="corner"),
    ):
        for seed in range(10):
            assert float(_apply(corruption, seed)[1].float().mean()) >= 0.3
    with pytest.raises(VitsslError, match="placement"):
        GrayscalePatch(placement="centre")
