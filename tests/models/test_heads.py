import torch

from vitssl.models import DINOHead


def test_head_shapes_and_cosine_logits():
    head = DINOHead(32, 100, hidden_dim=64, bottleneck_dim=16)
    out = head(torch.randn(5, 32))
    assert out.shape == (5, 100)
    # With the norm frozen at 1 both factors are unit vectors: logits are cosines.
    assert out.abs().max() <= 1.0 + 1e-5


def test_frozen_last_layer_keeps_unit_row_norms_after_updates():
    torch.manual_seed(0)
    head = DINOHead(8, 20, hidden_dim=16, bottleneck_dim=4, norm_last_layer=True)
    assert not head.last_layer.weight_g.requires_grad
    opt = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=1.0)
    for _ in range(5):
        opt.zero_grad()
        head(torch.randn(4, 8)).pow(2).sum().backward()
        opt.step()
    norms = head.last_layer.weight.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(20))


def test_unfrozen_norm_is_trainable():
    head = DINOHead(8, 20, hidden_dim=16, bottleneck_dim=4, norm_last_layer=False)
    assert head.last_layer.weight_g.requires_grad


def test_architecture_matches_paper_defaults():
    head = DINOHead(384, 65536)
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(384, 2048), (2048, 2048), (2048, 256)]
    assert head.last_layer.weight_v.shape == (65536, 256)
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in linears)
    assert float(linears[0].weight.detach().std()) < 0.03
