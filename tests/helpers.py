"""Assertions several test files share."""

from __future__ import annotations

import networkx as nx
import torch

from archgraph import compile_graph


def assert_architecture_trains(arch: nx.DiGraph, steps: int = 10, classes: int = 5) -> None:
    """A derived architecture compiles alone and a few SGD steps on a fixed batch lower its loss."""
    net = compile_graph(arch)
    torch.manual_seed(0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, classes, (2, 32, 32))
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
