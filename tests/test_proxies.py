"""Zero-cost proxies on hand-built networks whose values are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from archgraph.engine.proxies import grad_norm, jacov_from_jacobians, naswot, naswot_from_codes, snip, synflow


def _chain(bias: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4, bias=bias), nn.ReLU(), nn.Linear(4, 2, bias=bias))


def test_synflow_of_a_linear_chain_is_depth_times_the_path_sum():
    """With |W| and an all-ones input, R = 1^T |W2| |W1| 1 is linear in each layer's weights, so each
    layer's sum of |w dR/dw| is R itself: synflow = (number of layers) * R."""
    net = _chain()
    w1, w2 = net[0].weight.detach().abs(), net[2].weight.detach().abs()
    r = float((w2 @ w1 @ torch.ones(3)).sum())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert synflow(net, (3,)) == pytest.approx(2 * r, rel=1e-6)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # signs and dtype restored
    assert next(net.parameters()).dtype == torch.float32


def test_synflow_turns_batchnorm_off():
    """BN on an all-ones batch of one would divide by a zero variance; as the reference, it is skipped."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.Linear(4, 2, bias=False))
    plain = nn.Sequential(net[0], nn.Identity(), net[2])
    assert synflow(net, (3,)) == pytest.approx(synflow(plain, (3,)), rel=1e-9)
    assert synflow(net, (3,)) > 0


def test_naswot_kernel_of_known_codes():
    # two images disagreeing on h of n units: K = [[n, n-h], [n-h, n]], log det = log(n^2 - (n-h)^2)
    codes = torch.tensor([[1, 1, 0, 0, 1], [1, 0, 1, 0, 1]])
    n, h = 5, 2
    assert naswot_from_codes(codes) == pytest.approx(math.log(n * n - (n - h) ** 2))
    assert naswot_from_codes(torch.tensor([[1, 0, 1], [1, 0, 1]])) == -math.inf  # identical codes: K singular
    # hooked on a network: a ReLU's codes are the signs of its input
    x = torch.tensor([[1.0, -1.0, 2.0], [-1.0, 1.0, 2.0]])
    assert naswot(nn.Sequential(nn.ReLU()), x) == pytest.approx(math.log(3 * 3 - 1 * 1))  # h = 2 of 3


def test_snip_and_grad_norm_by_hand():
    """One 1x1 conv, no bias: logits = W x, so dL/dW is the outer product of (softmax - onehot) and x."""
    conv = nn.Conv2d(2, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]).view(3, 2, 1, 1))
    x = torch.tensor([[0.5, -1.0]]).view(1, 2, 1, 1)
    y = torch.tensor([[[2]]])
    with torch.no_grad():
        p = torch.softmax(conv.weight.view(3, 2) @ x.view(2), 0)
        g = torch.outer(p - torch.eye(3)[2], x.view(2))
    assert grad_norm(conv, x, y) == pytest.approx(float(g.norm()), rel=1e-5)
    assert snip(conv, x, y) == pytest.approx(float((g * conv.weight.detach().view(3, 2)).abs().sum()), rel=1e-5)
    assert conv.weight.grad is None  # no gradient left behind


def test_jacov_of_known_correlations():
    # two Jacobians with correlation r: eigenvalues 1 +- r
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    b = torch.tensor([1.0, 3.0, 2.0, 4.0])
    r = float(torch.corrcoef(torch.stack([a, b]).double())[0, 1])
    k = 1e-5
    expected = -sum(math.log(v + k) + 1 / (v + k) for v in (1 + r, 1 - r))
    assert jacov_from_jacobians(torch.stack([a, b])) == pytest.approx(expected, rel=1e-9)
    assert math.isnan(jacov_from_jacobians(torch.stack([a, torch.ones(4)])))  # a constant Jacobian: undefined
