"""A latency table calibrated against whole networks: the per-node overhead enters every prediction
(derived graphs, decisions, the expected cost) exactly as stored, the fit recovers a known overhead,
and `archgraph latency --calibrate` writes it."""

from __future__ import annotations

import json

import pytest
import torch

from archgraph import build_space
from archgraph.cli import main
from archgraph.core.choices import discover_choices
from archgraph.core.costmodel import CostModel
from archgraph.core.decode import decisions, decode, uniform_scores
from archgraph.core.latency import LatencyTable
from archgraph.core.latencycal import calibrate_table, fit_overhead, mape
from archgraph.errors import ConfigError

HW = (32, 32)


@pytest.fixture(scope="module")
def graph():
    return build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 3})


def fake_table(graph, calibration=None) -> LatencyTable:
    """A table with made-up entries (1 ms per distinct item): the arithmetic, not the machine."""
    from archgraph.core.costitems import distinct_items

    meta = {"device": "cpu", "dtype": "fp32", "resolution": list(HW)}
    if calibration:
        meta["calibration"] = calibration
    return LatencyTable(meta, {LatencyTable.entry_key(k, "fp32", "cpu"): 1.0 for k in distinct_items(graph, HW)})


def test_fit_and_error_by_hand():
    a, b = fit_overhead([10, 12, 14], [1.0 + 0.5 * 10, 1.0 + 0.5 * 12, 1.0 + 0.5 * 14])
    assert a == pytest.approx(1.0) and b == pytest.approx(0.5)
    assert fit_overhead([7, 7], [2.0, 4.0]) == (3.0, 0.0)  # one node count: the mean, no slope
    assert mape([9.0, 11.0], [10.0, 10.0]) == pytest.approx(10.0)


def test_the_overhead_enters_every_prediction_exactly(graph):
    plain, cal = CostModel(graph, "latency", HW, fake_table(graph)), CostModel(graph, "latency", HW, fake_table(graph, {"intercept_ms": 1.5, "per_node_ms": 0.25}))
    choices = discover_choices(graph)
    for seed in range(3):
        ops, inputs = uniform_scores(choices, seed)
        derived, (op_idx, input_idx) = decode(graph, ops, inputs), decisions(choices, ops, inputs)
        nodes = derived.number_of_nodes() - 1
        want = plain.of_graph(derived) + 1.5 + 0.25 * nodes
        assert cal.of_graph(derived) == pytest.approx(want, rel=1e-12)
        assert cal.of_decisions(op_idx, input_idx) == pytest.approx(want, rel=1e-12)
        op_p = {c.label: torch.nn.functional.one_hot(torch.tensor(op_idx[c.label]), len(c.candidates)).double() for c in choices.ops}
        in_p = {c.label: torch.tensor([float(i in input_idx[c.label]) for i in range(len(c.candidates))]) for c in choices.inputs}
        assert float(cal.expected(op_p, in_p)) == pytest.approx(want, rel=1e-12)  # exact at one-hot, as without calibration
    assert cal.fixed() > plain.fixed()
    assert CostModel(graph, "flops", HW).per_node == 0.0  # counts are never calibrated


def test_calibration_recovers_a_known_overhead(graph, monkeypatch):
    """Whole networks that take exactly the module sum plus 2 ms plus 0.5 ms per node: the fit finds it."""
    import archgraph.core.latency as latency_module

    table = fake_table(graph)
    plain = CostModel(graph, "latency", HW, fake_table(graph))
    truth = {}

    def fake_time(net, resolution, device, dtype, warmup, reps):
        g = truth[id(net)]
        return plain.of_graph(g) + 2.0 + 0.5 * (g.number_of_nodes() - 1)

    import archgraph.core.compile as compile_module

    real_compile = compile_module.compile_graph

    def compile_and_remember(g):
        net = real_compile(g)
        truth[id(net)] = g
        return net

    monkeypatch.setattr(compile_module, "compile_graph", compile_and_remember)
    monkeypatch.setattr(latency_module, "time_network_ms", fake_time)  # what time_networks_ms times each network with
    record = calibrate_table(graph, table, archs=6, rounds=1)
    assert record["intercept_ms"] == pytest.approx(2.0, abs=1e-9) and record["per_node_ms"] == pytest.approx(0.5, abs=1e-9)
    assert record["mape_after"] == pytest.approx(0.0, abs=1e-9) and record["mape_before"] > 0
    assert table.overhead() == pytest.approx((2.0, 0.5))
    with pytest.raises(ConfigError, match="at least 2"):
        calibrate_table(graph, table, archs=1)


def test_the_command_calibrates_by_default_and_not_with_zero(tmp_path):
    out = tmp_path / "t.json"
    base = ["latency", "--set", "space.layers=2", "space.base_channels=4", "--resolution", "32x32", "--reps", "1", "--warmup", "0", "--out", str(out), "--no-progress"]
    assert main([*base, "--calibrate", "3"]) == 0
    cal = json.loads(out.read_text())["meta"]["calibration"]
    assert cal["archs"] == 3 and {"intercept_ms", "per_node_ms", "mape_before", "mape_after"} <= set(cal)
    assert main([*base, "--calibrate", "0", "--force"]) == 0
    assert "calibration" not in json.loads(out.read_text())["meta"]
    assert main([*base, "--calibrate", "1"]) != 0
