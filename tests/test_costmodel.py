"""The cost model: additive FLOPs and parameters equal the compiled network's, the expected cost is
differentiable and exact at one-hot probabilities, budgets parse or are refused in one line."""

from __future__ import annotations

import pytest
import torch

from archgraph import build_space
from archgraph.core.choices import discover_choices
from archgraph.core.compile import compile_graph
from archgraph.core.costitems import distinct_items
from archgraph.core.costmodel import CostLimit, CostModel, expected_cost, parse_cost_limit, parse_resolution
from archgraph.core.costs import count_params, model_flops
from archgraph.core.decode import decisions, decode, uniform_scores
from archgraph.errors import ConfigError, GraphError

HW = (64, 64)  # a multiple of the coarsest scale (32): the compiled network pads nothing


def random_archs(graph, seeds):
    choices = discover_choices(graph)
    for seed in seeds:
        ops, inputs = uniform_scores(choices, seed)
        yield decode(graph, ops, inputs), decisions(choices, ops, inputs)


@pytest.mark.parametrize("space, params", [("dcss", {"layers": 2, "base_channels": 4, "num_classes": 3}), ("unet", {"levels": 2, "base_channels": 4, "num_classes": 3})])
def test_additive_flops_and_params_equal_the_compiled_network(space, params):
    """Every op, branch, addition, concat fusion, stem and the head counted once: exact, as integers."""
    graph = build_space(space, params)
    flops, weights = CostModel(graph, "flops", HW), CostModel(graph, "params", HW)
    for derived, (op_idx, input_idx) in random_archs(graph, range(3)):
        net = compile_graph(derived)
        want_flops, want_params = model_flops(net, HW), count_params(net)
        assert flops.raw_of_decisions(op_idx, input_idx) == want_flops
        assert weights.raw_of_decisions(op_idx, input_idx) == want_params
        assert flops.of_graph(derived) == want_flops / 1e9 and weights.of_graph(derived) == want_params / 1e6
        assert flops.of_decisions(op_idx, input_idx) == flops.of_graph(derived)
    assert flops.unit == "GFLOP" and weights.unit == "M params"
    assert 0 < flops.fixed() < flops.of_graph(derived)


def test_expected_cost_is_exact_at_one_hot_and_differentiable(tiny_space):
    model = CostModel(tiny_space, "flops", HW)
    choices = model.choices
    for _, (op_idx, input_idx) in random_archs(tiny_space, range(2)):
        op_p = {c.label: torch.nn.functional.one_hot(torch.tensor(op_idx[c.label]), len(c.candidates)).double() for c in choices.ops}
        in_p = {c.label: torch.tensor([float(i in input_idx[c.label]) for i in range(len(c.candidates))]) for c in choices.inputs}
        assert float(model.expected(op_p, in_p)) == pytest.approx(model.of_decisions(op_idx, input_idx), rel=1e-12)
    net = compile_graph(tiny_space)
    cost = expected_cost(net, model)
    cost.backward()
    grads = [p.grad for p in net.arch_parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    assert model.fixed() < float(cost.detach()) < sum(max(model.op_costs(n)) + sum(model.input_costs(n)) for n in model.items) + model.fixed()


def test_identical_candidates_share_one_key(tiny_space):
    items = distinct_items(tiny_space, HW)
    modules = sum(len(c.candidates) for c in discover_choices(tiny_space).ops)
    assert len(items) < modules + tiny_space.number_of_edges()  # far fewer than one per candidate op and edge
    model = CostModel(tiny_space, "flops", HW)
    same_scale = {}
    for n, node in model.items.items():  # two nodes of one scale and width: the same op keys, one measurement
        same_scale.setdefault(tuple(i.key for i in node.ops), []).append(n)
    assert any(len(v) > 1 for v in same_scale.values())
    assert len(model._cache) <= len(items)


def test_cell_spaces_and_tableless_latency_are_refused(tiny_space):
    adl = build_space("autodeeplab", {"layers": 2, "base_channels": 4, "num_classes": 3})
    with pytest.raises(GraphError, match="flat graphs"):
        CostModel(adl, "flops", HW)
    with pytest.raises(ConfigError, match="archgraph latency"):
        CostModel(tiny_space, "latency", HW)
    with pytest.raises(ConfigError, match="one of"):
        CostModel(tiny_space, "energy", HW)


@pytest.mark.parametrize(
    "text, want",
    [
        ("latency=33ms@512x1024", CostLimit("latency", 33.0, (512, 1024))),
        ("latency=0.5s", CostLimit("latency", 500.0)),
        ("flops=1.5G", CostLimit("flops", 1.5)),
        ("flops=250M", CostLimit("flops", 0.25)),
        ("params=2M", CostLimit("params", 2.0)),
        ("params = 800k @ 256x512", CostLimit("params", 0.8, (256, 512))),
    ],
)
def test_parse_cost_limit_accepts(text, want):
    got = parse_cost_limit(text)
    assert got.metric == want.metric and got.value == pytest.approx(want.value) and got.resolution == want.resolution
    assert parse_cost_limit(str(got)) == got  # the printed form parses back


@pytest.mark.parametrize(
    "text, says",
    [
        ("speed=3", "metric 'speed'"),
        ("latency=33G", "unit 'G'"),
        ("flops=0", "positive"),
        ("flops", "METRIC=VALUE"),
        ("latency=33ms@512", "HEIGHTxWIDTH"),
        ("params=-2M", "METRIC=VALUE"),
    ],
)
def test_parse_cost_limit_refuses_in_one_line(text, says):
    with pytest.raises(ConfigError) as err:
        parse_cost_limit(text)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_parse_resolution():
    assert parse_resolution("512x1024") == (512, 1024) and parse_resolution((64, 32)) == (64, 32)
    for bad in ("512", "0x4", "axb", (1, 2, 3)):
        with pytest.raises(ConfigError, match="512x1024"):
            parse_resolution(bad)
