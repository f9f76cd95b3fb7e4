"""DINO's training step against a reference written from the paper's algorithm (Caron et al. 2021, arXiv
2104.14294: Algorithm 1, section 3.1 and appendix; docs/methods.md 1.3-1.4).

The same fixed crops go through vitssl's trainer step and through a hand-written step for several optimiser
steps; the weights, the teacher and the centre must agree within 1e-5. The reference shares only the starting
weights and the network modules' forward layers with vitssl: the loss, the per-tensor clipping, the frozen last
layer, AdamW with DINO's two parameter groups, the schedules, the teacher EMA and the centre are written out here.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conftest import TINY_OVERRIDES
from reference_steps import ReferenceAdamW, cosine
from vitssl.api import build_trainer
from vitssl.config import load_config
from vitssl.data.batches import ViewBatch

STEPS = 5
LR, MIN_LR, WD, WD_END, CLIP = 0.02, 1e-3, 0.04, 0.4, 10.0
TAU_S, TAU_T0, TAU_T, CENTER_M, M0 = 0.1, 0.04, 0.07, 0.9, 0.996


class ReferenceDINO:
    """A student, a teacher, a centre and an AdamW state, updated as the paper describes."""

    def __init__(self, student: nn.Module, teacher: nn.Module, out_dim: int) -> None:
        self.student, self.teacher = copy.deepcopy(student), copy.deepcopy(teacher)
        self.center = torch.zeros(1, out_dim, dtype=torch.float64)
        self.adam = ReferenceAdamW()
        self.clipped: list[bool] = []  # per tensor and step: whether clipping shortened the gradient

    @staticmethod
    def logits(net: nn.Module, crops: list[Tensor]) -> list[Tensor]:
        """[CLS] after the final norm -> 3-layer MLP -> L2 normalisation -> weight-normalised prototypes."""
        head = net["head"]
        g, v = head.last_layer.weight_g, head.last_layer.weight_v
        prototypes = g[:, None] * v / v.norm(dim=1, keepdim=True)
        out = []
        for x in crops:
            cls = net["backbone"].model.forward_features(x)[:, 0]
            z = F.normalize(head.mlp(cls), dim=-1)
            out.append(z @ prototypes.T)
        return out

    def loss(self, crops: list[Tensor], tau_t: float) -> tuple[Tensor, Tensor]:
        """Cross-entropy H(P_t(g), P_s(v)) over pairs of different crops, teacher on the two global crops only."""
        with torch.no_grad():
            teacher = self.logits(self.teacher, crops[:2])
        student = self.logits(self.student, crops)
        total, pairs = 0.0, 0
        for gi, t in enumerate(teacher):
            p_t = F.softmax((t - self.center) / tau_t, dim=-1)
            for vi, s in enumerate(student):
                if vi == gi:
                    continue
                total = total + (-(p_t * F.log_softmax(s / TAU_S, dim=-1)).sum(-1)).mean()
                pairs += 1
        return total / pairs, torch.cat(teacher)

    def step(self, crops: list[Tensor], lr: float, wd: float, momentum: float, tau_t: float, frozen: bool) -> None:
        named = [(n, p) for n, p in self.student.named_parameters() if p.requires_grad]
        for _, p in named:
            p.grad = None
        loss, teacher = self.loss(crops, tau_t)
        loss.backward()
        with torch.no_grad():
            for name, p in named:
                if frozen and "last_layer" in name:
                    p.grad = None  # the prototypes keep still during the first epoch(s)
                if p.grad is None:
                    continue
                norm = p.grad.norm()
                self.clipped.append(bool(norm > CLIP))
                p.grad.mul_(min(1.0, CLIP / (float(norm) + 1e-6)))  # per tensor, not the global norm
                decay = wd if (p.ndim > 1 and not name.endswith(".bias")) else 0.0
                self.adam.update(name, p, lr, decay)
            # teacher <- m teacher + (1 - m) student, every parameter; then the centre, from this step's teacher
            for pt, ps in zip(self.teacher.parameters(), self.student.parameters(), strict=True):
                pt.mul_(momentum).add_(ps.detach(), alpha=1 - momentum)
            self.center = CENTER_M * self.center + (1 - CENTER_M) * teacher.mean(0, keepdim=True)


def fixed_crops(seed: int) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    crops = [torch.randn(4, 3, 16, 16, generator=g) for _ in range(2)]
    crops += [torch.randn(4, 3, 8, 8, generator=g) for _ in range(2)]
    return [c.double() for c in crops]


@pytest.fixture
def trainer(tiny_image_folder, tmp_path):
    torch.manual_seed(0)
    overrides = [
        f"data.train={tiny_image_folder}",
        *TINY_OVERRIDES,
        "dino.out_dim=32",
        "model.drop_path=0.0",
        "dino.norm_last_layer=true",
        "dino.freeze_last_layer=0.5",  # 3 of the 6 steps of an epoch
        f"dino.warmup_teacher_temp={TAU_T0}",
        f"dino.teacher_temp={TAU_T}",
        "dino.warmup_teacher_temp_epochs=1",
        "optim.epochs=2",
        "optim.warmup_epochs=0.5",
        f"optim.lr={LR}",
        f"optim.min_lr={MIN_LR}",
        f"optim.weight_decay={WD}",
        f"optim.weight_decay_end={WD_END}",
        f"optim.clip_grad={CLIP}",
        "train.precision=fp32",
        f"train.out_dir={tmp_path}",
    ]
    return build_trainer(load_config(None, overrides))


def test_dino_steps_match_a_reference_written_from_the_paper(trainer):
    # In float64: some gradients are 0 in exact arithmetic (the key biases of attention, which a softmax ignores),
    # and AdamW divides a gradient by its own running size, so float32 rounding noise there would become steps of
    # up to lr in both implementations, at random.
    method = trainer.method.double()
    method.train()
    ref = ReferenceDINO(method.student, method.teacher, 32)
    ref.student.train(), ref.teacher.train()
    total, spe = trainer.total_steps, trainer.steps_per_epoch
    assert (spe, total) == (6, 12)  # 24 images, 4 per step, 2 epochs
    base_lr = LR * 4 / 256
    last_layer = method.student["head"].last_layer.weight_v
    start = last_layer.detach().clone()
    for i in range(STEPS):
        crops = fixed_crops(i)
        state = trainer.state_at(i)
        trainer.apply_state(state)
        trainer.optimizer_step(iter([ViewBatch(views=[c.clone() for c in crops])]), state)
        tau_t = TAU_T0 + (TAU_T - TAU_T0) * i / spe  # linear over the first epoch, per step (docs deviation 2)
        ref.step(
            crops,
            lr=cosine(i, total, base_lr, MIN_LR, warmup=spe // 2),
            wd=cosine(i, total, WD, WD_END),
            momentum=cosine(i, total, M0, 1.0),
            tau_t=tau_t,
            frozen=i < spe // 2,
        )
        if i == spe // 2 - 1:  # the last frozen step: the prototypes have not moved
            assert torch.equal(last_layer, start)
    assert not torch.equal(last_layer, start)  # and they moved once unfrozen
    assert any(ref.clipped) and not all(ref.clipped)  # the clipping threshold was reached by some tensors only
    pairs = [
        *zip(method.student.named_parameters(), ref.student.parameters(), strict=True),
        *zip(method.teacher.named_parameters(), ref.teacher.parameters(), strict=True),
    ]
    for (name, ours), theirs in pairs:
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (name, (ours - theirs).abs().max().item())
    assert torch.allclose(method.loss_fn.center, ref.center, atol=1e-5, rtol=0)
    assert ref.center.abs().sum() > 0


def test_the_reference_warm_up_differs_from_dinos_linspace_by_at_most_one_step():
    """DINO's code warms up with linspace(0, base, W): it reaches base at step W - 1; vitssl at step W."""
    base, warmup, total = 1.0, 10, 100
    linspace = [base * i / (warmup - 1) for i in range(warmup)]
    ours = [cosine(i, total, base, 0.0, warmup) for i in range(warmup + 1)]
    assert linspace[-1] == base and ours[warmup - 1] == pytest.approx(0.9) and ours[warmup] == base
    assert max(a - b for a, b in zip(linspace, ours[:warmup], strict=True)) <= base / warmup
