import math

import pytest
import torch
import torch.nn.functional as F

import vitssl.losses.esvit as esvit_module
from vitssl.losses import DINOLoss, EsViTLoss, match_regions


def _softmax(xs):
    exps = [math.exp(x) for x in xs]
    return [e / sum(exps) for e in exps]


def test_match_regions_finds_the_known_argmax():
    # teacher tokens along the axes; student tokens are scaled, noisy copies in a known permutation
    teacher = torch.eye(4).unsqueeze(0)  # (1, 4, 4)
    student = torch.tensor([[[0.1, 0.0, 3.0, 0.2], [2.0, 0.1, 0.0, 0.0], [0.0, 0.0, 0.3, 5.0]]])
    index, sim = match_regions(student, teacher)
    assert index.tolist() == [[2, 0, 3]]
    expected = [3.0 / math.sqrt(0.01 + 9 + 0.04), 2.0 / math.sqrt(4 + 0.01), 5.0 / math.sqrt(0.09 + 25)]
    torch.testing.assert_close(sim[0], torch.tensor(expected))


def test_match_is_by_backbone_features_not_by_position_and_allows_many_to_one():
    teacher = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    student = torch.tensor([[[0.9, 0.1], [0.8, -0.1], [0.0, 2.0], [-3.0, 0.5]]])
    index, _ = match_regions(student, teacher)
    assert index.tolist() == [[0, 0, 1, 2]]


def test_region_loss_matches_hand_computed_example():
    # B=1, K=2; two global crops with 2 tokens each, no local crops -> pairs (g0, v1) and (g1, v0)
    tau_s, tau_t = 0.1, 0.05
    feat = [torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), torch.tensor([[[0.0, 2.0], [3.0, 0.1]]])]
    region = [torch.tensor([[[0.3, 0.1], [0.0, 0.2]]]), torch.tensor([[[0.5, -0.5], [0.1, 0.4]]])]
    view = [torch.tensor([[0.2, 0.0]]), torch.tensor([[0.0, 0.1]])]
    # crop 1's token 0 ~ crop 0's token 1, crop 1's token 1 ~ crop 0's token 0 (and vice versa)
    match = {(0, 1): [1, 0], (1, 0): [1, 0]}  # (teacher g, student v) -> teacher index per student token

    def ce(p, logits):
        return -sum(pi * math.log(qi) for pi, qi in zip(p, _softmax([x / tau_s for x in logits]), strict=True))

    expected_region = 0.0
    for (g, v), idx in match.items():
        terms = [
            ce(_softmax([x / tau_t for x in region[g][0, j].tolist()]), region[v][0, i].tolist())
            for i, j in enumerate(idx)
        ]
        expected_region += sum(terms) / len(terms)
    expected_region /= 2
    expected_view = (
        ce(_softmax([x / tau_t for x in view[0][0].tolist()]), view[1][0].tolist())
        + ce(_softmax([x / tau_t for x in view[1][0].tolist()]), view[0][0].tolist())
    ) / 2
    loss_fn = EsViTLoss(out_dim=2, student_temp=tau_s, view_weight=0.5, region_weight=0.5)
    parts = loss_fn.parts(view, region, feat, view, region, feat, tau_t)
    assert parts.region.item() == pytest.approx(expected_region, rel=1e-5)
    assert parts.view.item() == pytest.approx(expected_view, rel=1e-5)
    assert parts.total.item() == pytest.approx(0.5 * expected_view + 0.5 * expected_region, rel=1e-5)


def _random_inputs(b=3, k=7, d=5, tokens=(4, 4, 1, 1), seed=0):
    g = torch.Generator().manual_seed(seed)
    sv = [torch.randn(b, k, generator=g, requires_grad=True) for _ in tokens]
    sr = [torch.randn(b, n, k, generator=g, requires_grad=True) for n in tokens]
    sf = [torch.randn(b, n, d, generator=g) for n in tokens]
    tv = [torch.randn(b, k, generator=g) for _ in range(2)]
    tr = [torch.randn(b, tokens[i], k, generator=g) for i in range(2)]
    tf = [torch.randn(b, tokens[i], d, generator=g) for i in range(2)]
    return sv, sr, sf, tv, tr, tf


def test_without_region_term_it_is_dino_times_the_view_weight():
    sv, sr, sf, tv, tr, tf = _random_inputs()
    esvit = EsViTLoss(out_dim=7, view_weight=0.5, region_weight=0.0)
    dino = DINOLoss(out_dim=7)
    esvit.center.normal_()
    dino.center.copy_(esvit.center)
    torch.testing.assert_close(esvit(sv, sr, sf, tv, tr, tf, 0.04), 0.5 * dino(sv, tv, 0.04))


def test_forward_changes_no_state_and_update_center_moves_both_centres():
    sv, sr, sf, tv, tr, tf = _random_inputs()
    loss_fn = EsViTLoss(out_dim=7, center_momentum=0.9)
    loss_fn.center.fill_(0.5)
    loss_fn.center_region.fill_(-0.5)
    before = {k: v.clone() for k, v in loss_fn.state_dict().items()}
    loss_fn(sv, sr, sf, tv, tr, tf, 0.04).backward()
    assert all(torch.equal(before[k], v) for k, v in loss_fn.state_dict().items())
    loss_fn.update_center(tv, tr)
    torch.testing.assert_close(loss_fn.center, 0.9 * before["center"] + 0.1 * torch.cat(tv).mean(0, keepdim=True))
    region_mean = torch.cat([t.reshape(-1, 7) for t in tr]).mean(0, keepdim=True)
    torch.testing.assert_close(loss_fn.center_region, 0.9 * before["center_region"] + 0.1 * region_mean)


def _naive_region_loss(loss_fn, sr, sf, tr, tf, temp):
    """The region term written the obvious way: gather the matched teacher rows, full autograd."""
    total, pairs = 0.0, 0
    for g in range(len(tr)):
        for v in range(len(sr)):
            if v == g:
                continue
            idx, _ = match_regions(sf[v], tf[g])
            p = F.softmax((tr[g] - loss_fn.center_region) / temp, dim=-1)
            target = torch.gather(p, 1, idx.unsqueeze(-1).expand(-1, -1, p.shape[-1]))
            total = total - (target * F.log_softmax(sr[v] / loss_fn.student_temp, dim=-1)).sum(-1).mean()
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("chunk_elements", [1 << 22, 7])
def test_chunked_region_term_and_its_gradient_match_the_naive_version(monkeypatch, chunk_elements):
    monkeypatch.setattr(esvit_module, "CHUNK_ELEMENTS", chunk_elements)  # 7: one image per chunk
    sv, sr, sf, tv, tr, tf = _random_inputs(b=4, tokens=(4, 4, 1, 2, 2))
    loss_fn = EsViTLoss(out_dim=7)
    loss_fn.center_region.normal_()
    parts = loss_fn.parts(sv, sr, sf, tv, tr, tf, 0.05)
    naive = _naive_region_loss(loss_fn, sr, sf, tr, tf, 0.05)
    torch.testing.assert_close(parts.region, naive.detach())
    # the view term does not depend on the region logits, so only the region term's gradient reaches them
    grads = torch.autograd.grad(parts.total, sr)
    naive_grads = torch.autograd.grad(0.5 * naive, sr)
    for got, want in zip(grads, naive_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_matched_cross_entropy_passes_gradcheck():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    p = F.softmax(torch.randn(2, 5, 4, generator=g, dtype=torch.float64), dim=-1)
    idx = torch.randint(0, 5, (2, 3), generator=g)

    def f(z):
        return esvit_module._MatchedCrossEntropy.apply(z, p, idx)

    # the forward accumulates in fp32, so check the analytic gradient against finite differences loosely
    assert torch.autograd.gradcheck(f, (z,), eps=1e-3, atol=1e-3, rtol=1e-2)


def test_zero_and_two_local_crop_sizes_work():
    for tokens in ((4, 4), (4, 4, 1, 1, 2, 2)):
        sv, sr, sf, tv, tr, tf = _random_inputs(tokens=tokens)
        parts = EsViTLoss(out_dim=7).parts(sv, sr, sf, tv, tr, tf, 0.04)
        assert torch.isfinite(parts.total) and parts.region > 0
        parts.total.backward()
        assert all(r.grad is not None for r in sr)


def test_coverage_and_similarity_are_reported():
    sv, sr, sf, tv, tr, tf = _random_inputs()
    parts = EsViTLoss(out_dim=7).parts(sv, sr, sf, tv, tr, tf, 0.04)
    assert 0 < parts.coverage <= 1 and -1 <= parts.similarity <= 1


def test_view_only_phase_is_the_plain_dino_loss():
    # Before esvit.region_loss_start the authors train on the DINO loss itself (docs/methods.md 2.3): the method
    # passes view_weight=1 with region_weight=0; the constructor's weights (the public API) are unchanged.
    sv, sr, sf, tv, tr, tf = _random_inputs()
    esvit = EsViTLoss(out_dim=7, view_weight=0.5, region_weight=0.5)
    dino = DINOLoss(out_dim=7)
    esvit.center.normal_()
    dino.center.copy_(esvit.center)
    parts = esvit.parts(sv, sr, sf, tv, tr, tf, 0.04, region_weight=0.0, view_weight=1.0)
    torch.testing.assert_close(parts.total, dino(sv, tv, 0.04))
    assert esvit.view_weight == 0.5 and esvit.region_weight == 0.5


def test_esvit_method_uses_view_weight_one_before_the_region_loss_starts(monkeypatch):
    from vitssl.config import load_config
    from vitssl.methods import build_method

    cfg = load_config(
        None,
        [
            "method=esvit",
            "model.backbone=vit_tiny",
            "model.patch_size=8",
            "model.depth=1",
            "crops.global_size=16",
            "crops.local_count=0",
            "dino.out_dim=16",
            "dino.hidden_dim=16",
            "dino.bottleneck_dim=8",
            "esvit.region_loss_start=5",
        ],
    )
    method = build_method(cfg)
    seen = []
    original = method.loss_fn.parts

    def spy(*args, **kwargs):
        seen.append((kwargs.get("region_weight"), kwargs.get("view_weight")))
        return original(*args, **kwargs)

    monkeypatch.setattr(method.loss_fn, "parts", spy)
    from vitssl.data.batches import ViewBatch
    from vitssl.schedules import StepState

    views = [torch.randn(2, 3, 16, 16) for _ in range(2)]
    batch = ViewBatch(views=views, label=torch.zeros(2, dtype=torch.long), index=torch.arange(2), skipped=0)
    for step, expected in ((0, (0.0, 1.0)), (60, (None, None))):  # epoch 0, then epoch 6 at 10 steps per epoch
        state = StepState(step=step, steps_per_epoch=10, total_steps=100, values={"teacher_temp": 0.04})
        method.training_step(batch, state)
        assert seen[-1] == expected
