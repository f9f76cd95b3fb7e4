"""The masked SiT training step against a reference written from the masked variant's published algorithm (Atito
et al., arXiv 2104.03602 v3; docs/methods.md 3.4): the authors' projection head (Linear-BN-ReLU-Linear-BN-GELU-
Linear-BatchNorm without affine parameters), their reconstruction head, the symmetric InfoNCE against an EMA
teacher on the clean views (each direction x 2 tau, summed), the L1 on the corrupted pixels, AdamW with DINO's
parameter groups and schedules, per-tensor clipping and the EMA.

The same fixed views, targets and masks go through vitssl's trainer step and through the hand-written step for
several optimiser steps; the weights must agree within 1e-5. The reference shares the starting weights and the
backbone's forward layers with vitssl; both heads, the losses and the update are written out here.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reference_steps import ReferenceAdamW, cosine
from vitssl.api import build_trainer
from vitssl.config import load_config
from vitssl.data.batches import SiTBatch

STEPS = 4
B, SIZE, PATCH = 4, 16, 4
LR, MIN_LR, WD, WD_END, CLIP = 0.02, 1e-3, 0.04, 0.1, 1.0
TAU, LAMBDA, M0 = 0.2, 2.0, 0.996


def batch_norm(x: Tensor, bn: nn.BatchNorm1d) -> Tensor:
    """Batch statistics (training mode), biased variance, then the affine map if the layer has one."""
    mean, var = x.mean(0), x.var(0, unbiased=False)
    y = (x - mean) / torch.sqrt(var + bn.eps)
    return y * bn.weight + bn.bias if bn.affine else y


def projection(head: nn.Module, x: Tensor) -> Tensor:
    """The authors' CLSHead with 3 layers: Linear-BN-ReLU, Linear-BN-GELU, Linear, BatchNorm(affine=False)."""
    lin1, bn1, _, lin2, bn2, _, lin3, bn3 = head.net
    x = F.relu(batch_norm(F.linear(x, lin1.weight, lin1.bias), bn1))
    x = F.gelu(batch_norm(F.linear(x, lin2.weight, lin2.bias), bn2))
    return batch_norm(F.linear(x, lin3.weight, lin3.bias), bn3)


def reconstruction(head: nn.Module, patches: Tensor, grid: tuple[int, int]) -> Tensor:
    """The authors' RECHead: 3 x (Linear(D, D), GELU) per token, then a transposed convolution with kernel =
    stride = patch on the token grid."""
    x = patches
    for layer in head.mlp:
        if isinstance(layer, nn.Linear):
            x = F.gelu(F.linear(x, layer.weight, layer.bias))
    b, n, d = x.shape
    x = x.transpose(1, 2).reshape(b, d, *grid)
    return F.conv_transpose2d(x, head.deconv.weight, head.deconv.bias, stride=PATCH)


def info_nce(q: Tensor, k: Tensor) -> Tensor:
    logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).T / TAU
    return F.cross_entropy(logits, torch.arange(q.shape[0]))


class ReferenceMaskedSiT:
    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        self.student, self.teacher = copy.deepcopy(student), copy.deepcopy(teacher)
        self.adam = ReferenceAdamW()
        self.clipped: list[bool] = []

    @staticmethod
    def tokens(net: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
        """[CLS] (the authors' only token, their contrastive one) and the patch tokens, after the final norm."""
        out = net["backbone"].model.forward_features(images)
        return out[:, 0], out[:, 2:]  # slot 1 is the register token vitssl keeps unused

    def loss(self, views: Tensor, targets: Tensor, masks: Tensor) -> Tensor:
        cls, patches = self.tokens(self.student, views)
        s1, s2 = projection(self.student["con"], cls).chunk(2)
        with torch.no_grad():
            t1, t2 = projection(self.teacher["con"], self.tokens(self.teacher, targets)[0]).chunk(2)
        contrastive = 2 * TAU * info_nce(s1, t2) + 2 * TAU * info_nce(s2, t1)
        recon = reconstruction(self.student["rec"], patches, (SIZE // PATCH, SIZE // PATCH))
        corrupted = masks.unsqueeze(1).expand_as(recon)
        l1 = (recon - targets).abs()[corrupted].mean()  # the mean over the corrupted pixels and channels
        return contrastive + LAMBDA * l1

    def step(self, views: Tensor, targets: Tensor, masks: Tensor, lr: float, wd: float, momentum: float) -> None:
        named = [(n, p) for n, p in self.student.named_parameters() if p.requires_grad]
        for _, p in named:
            p.grad = None
        self.loss(views, targets, masks).backward()
        with torch.no_grad():
            for name, p in named:
                if p.grad is None:
                    continue
                norm = float(p.grad.norm())
                self.clipped.append(norm > CLIP)
                p.grad.mul_(min(1.0, CLIP / (norm + 1e-6)))
                # DINO's two groups, which the masked code uses: the tokens and pos_embed (3-D) are decayed
                self.adam.update(name, p, lr, wd if (p.ndim > 1 and not name.endswith(".bias")) else 0.0)
            student = dict(self.student.named_parameters())
            for name, pt in self.teacher.named_parameters():
                pt.mul_(momentum).add_(student[name].detach(), alpha=1 - momentum)


def fixed_batch(seed: int) -> SiTBatch:
    g = torch.Generator().manual_seed(seed)
    targets = [torch.randn(B, 3, SIZE, SIZE, generator=g, dtype=torch.float64) for _ in range(2)]
    masks = [torch.rand(B, SIZE, SIZE, generator=g) < 0.5 for _ in range(2)]
    views = [t.masked_fill(m.unsqueeze(1), 0.0) for t, m in zip(targets, masks, strict=True)]
    rotations = [torch.zeros(B, dtype=torch.long) for _ in range(2)]
    return SiTBatch(views=views, targets=targets, masks=masks, rotations=rotations)


@pytest.fixture
def trainer(tiny_image_folder, tmp_path):
    torch.manual_seed(0)
    overrides = [
        "method=sit",
        f"data.train={tiny_image_folder}",
        f"data.batch_size={B}",
        "data.num_workers=0",
        "model.backbone=vit_tiny",
        f"model.patch_size={PATCH}",
        "model.depth=1",
        "model.drop_path=0.0",
        f"crops.global_size={SIZE}",
        "sit.variant=masked",
        "sit.contrastive_token=cls",
        "sit.proj_hidden_dim=32",
        "sit.proj_layers=3",
        "sit.proj_batch_norm=true",
        "sit.proj_dim=8",
        "sit.rec_head=mlp_deconv",
        "sit.rec_mlp_layers=3",
        f"sit.masked_temperature={TAU}",
        f"sit.rec_weight={LAMBDA}",
        f"sit.momentum_teacher={M0}",
        "optim.epochs=2",
        "optim.warmup_epochs=0.5",
        f"optim.lr={LR}",
        f"optim.min_lr={MIN_LR}",
        f"optim.weight_decay={WD}",
        f"optim.weight_decay_end={WD_END}",
        f"optim.clip_grad={CLIP}",
        "train.precision=fp32",
        "train.progress=false",
        f"train.out_dir={tmp_path}",
    ]
    return build_trainer(load_config(None, overrides))


def test_masked_sit_steps_match_a_reference_written_from_the_paper(trainer):
    method = trainer.method.double()  # float64: see tests/methods/test_parity_dino.py (AdamW and exact zeros)
    method.train()
    ref = ReferenceMaskedSiT(method.student, method.teacher)
    total, spe = trainer.total_steps, trainer.steps_per_epoch
    assert (spe, total) == (6, 12)
    for i in range(STEPS):
        batch = fixed_batch(i)
        state = trainer.state_at(i)
        trainer.apply_state(state)
        trainer.optimizer_step(iter([copy.deepcopy(batch)]), state)
        ref.step(
            torch.cat(batch.views),
            torch.cat(batch.targets),
            torch.cat(batch.masks),
            lr=cosine(i, total, LR * B / 256, MIN_LR, warmup=spe // 2),
            wd=cosine(i, total, WD, WD_END),
            momentum=cosine(i, total, M0, 1.0),
        )
    assert any(ref.clipped) and not all(ref.clipped)
    pairs = [
        *zip(method.student.named_parameters(), ref.student.parameters(), strict=True),
        *zip(method.teacher.named_parameters(), ref.teacher.parameters(), strict=True),
    ]
    for (name, ours), theirs in pairs:
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (name, (ours - theirs).abs().max().item())
    model = method.student["backbone"].model
    assert not torch.equal(model.pos_embed, ref.teacher["backbone"].model.pos_embed)  # the student moved


def test_the_projection_ends_in_a_batchnorm_that_standardises_every_dimension(trainer):
    head = trainer.method.student["con"]
    head.train()
    x = torch.randn(16, 192) * 5 + 3
    out, before = head(x), head.net[:-1](x)
    assert torch.allclose(out.mean(0), torch.zeros(8), atol=1e-5)
    spread = before.var(0, unbiased=False)  # the output variance is spread / (spread + eps): 1 but for eps
    assert torch.allclose(out.var(0, unbiased=False), spread / (spread + head.net[-1].eps), atol=1e-5)
    assert sum(p.numel() for p in head.net[-1].parameters()) == 0
