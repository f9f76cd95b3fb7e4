"""Run-time options of a backbone (models/runtime.py): they change how it runs, never what it computes."""

import pytest
import torch

from vitssl.config import load_config
from vitssl.errors import VitsslError
from vitssl.models.backbones import build_backbone
from vitssl.models.runtime import configure_backbones, set_attention_kernel, use_fused_attention


def _vit():
    torch.manual_seed(0)
    return build_backbone("vit_tiny", patch_size=8, img_size=32, depth=2).eval()


@pytest.mark.parametrize("name", ["vit", "swin"])
def test_explicit_and_fused_attention_agree(name):
    torch.manual_seed(0)
    backbone = _vit() if name == "vit" else build_backbone("swin_mini_32", img_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    assert set_attention_kernel(backbone, fused=True) > 0
    fused = backbone(x).tokens
    assert set_attention_kernel(backbone, fused=False) > 0
    explicit = backbone(x).tokens
    torch.testing.assert_close(fused, explicit, rtol=1e-4, atol=1e-4)


def test_auto_attention_is_the_fused_kernel_as_measured():
    assert use_fused_attention("auto", torch.device("cuda")) and use_fused_attention("auto", torch.device("cpu"))
    assert use_fused_attention("fused", torch.device("cpu")) and not use_fused_attention(
        "explicit", torch.device("cuda")
    )


def test_grad_checkpointing_gives_the_same_gradients_on_the_student_only():
    student, teacher = _vit().train(), _vit()
    x = torch.randn(2, 3, 32, 32)
    student(x).pooled.square().sum().backward()
    plain = [p.grad.clone() for p in student.parameters()]
    student.zero_grad()
    configure_backbones(student, [teacher], torch.device("cpu"), grad_checkpointing=True)
    assert student.model.grad_checkpointing and not teacher.model.grad_checkpointing
    student(x).pooled.square().sum().backward()
    for a, p in zip(plain, student.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)


def test_unknown_attention_kernel_is_a_one_line_config_error():
    with pytest.raises(VitsslError, match="model.attention"):
        load_config(None, ["model.attention=flash"])


@pytest.mark.slow
def test_compiled_backbone_keeps_its_names_and_outputs():
    """torch.compile on the CPU (inductor, a C++ compiler): same state-dict names, same features."""
    backbone = _vit()
    keys = list(backbone.state_dict())
    x = torch.randn(2, 3, 32, 32)
    eager = backbone(x).pooled
    configure_backbones(backbone, [], torch.device("cpu"), compile_model=True)
    assert list(backbone.state_dict()) == keys
    torch.testing.assert_close(backbone(x).pooled, eager, rtol=1e-4, atol=1e-4)
