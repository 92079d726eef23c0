"""The ASPP head: DeepLabv3's rates scaled to the map's output stride, the image-pooling branch's BN,
shapes and gradients, batch 1 in training and evaluation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archgraph import build_space, compile_graph
from archgraph.core.graph import NodeSpec
from archgraph.core.ops import ASPP, MultiScaleHead, aspp_rates
from archgraph.errors import GraphError


@pytest.mark.parametrize("stride, rates", [(16, (6, 12, 18)), (8, (12, 24, 36)), (4, (24, 48, 72)), (32, (3, 6, 9)), (2, (48, 96, 144)), (64, (2, 3, 5))])
def test_rates_follow_deeplabv3_scaled_to_the_output_stride(stride, rates):
    assert aspp_rates(stride) == rates
    assert ASPP(4, 4, output_stride=stride).rates == rates
    # the same image area: rate x stride is DeepLabv3's 6/12/18 x 16 (up to rounding)
    assert all(abs(r * stride - base * 16) <= stride / 2 for r, base in zip(rates, (6, 12, 18)))


def test_rates_stay_configurable_and_are_checked():
    assert ASPP(4, 4, rates=(1, 2)).rates == (1, 2)
    assert len(ASPP(4, 4, rates=(1, 2)).branches) == 3  # 1x1 + one per rate
    assert aspp_rates(4, rates=(1, 2), at_stride=8) == (2, 4)
    for bad in ((), (0, 3)):
        with pytest.raises(GraphError, match="rates"):
            ASPP(4, 4, rates=bad)
    with pytest.raises(GraphError, match="output stride"):
        aspp_rates(0)


def head(scales=(4, 8, 16, 32), base=4, classes=3, **kw) -> MultiScaleHead:
    return MultiScaleHead(NodeSpec("head", 3, 1, classes, ("head_aspp",)), [NodeSpec("fusion", 2, s, base * s // 4) for s in scales], aspp=True, **kw)


def test_the_dcss_head_uses_the_rates_of_its_finest_map():
    assert head().context.rates == (24, 48, 72)  # finest input at 1/4
    assert head(scales=(8, 16)).context.rates == (12, 24, 36)
    assert head(rates=(2, 4)).context.rates == (2, 4)
    g = build_space("dcss", {"layers": 1, "base_channels": 4, "num_classes": 3, "head": "aspp"})
    net = compile_graph(g)
    asps = [m for m in net.modules() if isinstance(m, ASPP)]
    assert [a.rates for a in asps] == [(24, 48, 72)]
    dilations = sorted(m.dilation[0] for m in asps[0].branches.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    assert dilations == [24, 48, 72]


def test_the_auto_deeplab_head_keeps_its_own_rates():
    g = build_space("autodeeplab", {"layers": 2, "base_channels": 4, "blocks": 2, "num_classes": 3})
    asps = [m for m in compile_graph(g).modules() if isinstance(m, ASPP)]
    assert sorted(a.rates for a in asps) == [(6,), (12,), (24,)]  # 96 / s for the scales layer 2 reaches


def test_the_pooled_branch_has_batchnorm_and_relu():
    pool = ASPP(4, 6).pool
    assert [type(m) for m in pool] == [nn.AdaptiveAvgPool2d, nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert pool[1].bias is None and pool[2].num_features == 6


def test_shapes_and_gradients_in_training_with_batch_2():
    torch.manual_seed(0)
    aspp = ASPP(8, 6, output_stride=4).train()
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    before = aspp.pool[2].running_mean.clone()
    y = aspp(x)
    assert y.shape == (2, 6, 16, 16)
    y.square().mean().backward()
    for name, p in aspp.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert aspp.pool[1].weight.grad.abs().sum() > 0  # the pooled branch learns through its BN
    assert x.grad.abs().sum() > 0
    assert not torch.equal(aspp.pool[2].running_mean, before)  # its BN trains like every other

    h = head()
    xs = [torch.randn(2, 4 * s // 4, 32 // s, 32 // s, requires_grad=True) for s in (4, 8, 16, 32)]
    out = h(xs)
    assert out.shape == (2, 3, 32, 32)
    out.mean().backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in xs)


def test_batch_1_evaluation_matches_batch_2():
    torch.manual_seed(0)
    aspp = ASPP(8, 6, output_stride=8)
    aspp.train()
    for _ in range(3):  # some running statistics to evaluate with
        aspp(torch.randn(4, 8, 8, 8))
    aspp.eval()
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        assert torch.allclose(aspp(x[:1]), aspp(x)[:1], atol=1e-6)


def test_batch_1_training_uses_the_running_statistics_of_the_pooled_bn_only():
    """One value per channel has no batch statistics (plain BN raises); that BN alone is frozen."""
    torch.manual_seed(0)
    aspp = ASPP(8, 6, output_stride=8).train()
    pooled_bn, other_bn = aspp.pool[2], aspp.branches[0][1]
    with pytest.raises(ValueError):  # what the branch would do without the special case
        nn.BatchNorm2d(6).train()(torch.randn(1, 6, 1, 1))
    pooled_before, other_before = pooled_bn.running_mean.clone(), other_bn.running_mean.clone()
    y = aspp(torch.randn(1, 8, 8, 8))
    y.mean().backward()
    assert y.shape == (1, 6, 8, 8)
    assert torch.equal(pooled_bn.running_mean, pooled_before) and pooled_bn.num_batches_tracked == 0
    assert not torch.equal(other_bn.running_mean, other_before)
    assert pooled_bn.training and aspp.training  # back in training mode afterwards
    assert aspp.pool[1].weight.grad is not None
