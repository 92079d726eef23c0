"""Comparisons at equal cost: the Pareto front on hand-made points, the budgets' plan and folders,
and a two-budget study writing its plot and table."""

from __future__ import annotations

import json

import pytest

from archgraph.config import load_config
from archgraph.errors import ConfigError
from archgraph.studies.compare import Plan
from archgraph.studies.compare.pareto import budget_plan, budget_slug, pareto_front, parse_cost_limits, run_budgets


def test_the_front_keeps_exactly_the_non_dominated_points():
    points = [(1.0, 0.50), (2.0, 0.60), (2.5, 0.55), (3.0, 0.70), (3.0, 0.65), (0.5, 0.40), (4.0, 0.70)]
    # (2.5, .55) is beaten by (2, .6); (3, .65) by (3, .7); (4, .7) by (3, .7)
    assert pareto_front(points) == [5, 0, 1, 3]
    assert pareto_front([(1.0, 0.5), (1.0, 0.5)]) == [0, 1]  # equal points are both kept
    assert pareto_front([]) == []


def test_budgets_are_parsed_planned_and_named():
    assert parse_cost_limits("flops=0.5G, flops=1G") == ["flops=0.5G", "flops=1G"]
    assert parse_cost_limits("latency=20ms@64x128,latency=40ms@64x128") == ["latency=20ms@64x128", "latency=40ms@64x128"]
    with pytest.raises(ConfigError, match="one metric"):
        parse_cost_limits("flops=1G,params=2M")
    with pytest.raises(ConfigError):
        parse_cost_limits("flops=1G,flops=1G")
    plan = Plan(load_config(None, []), ["dcnas"], [0])
    assert budget_plan(plan, "flops=1G").base.search.cost_limit == "flops=1G" and plan.base.search.cost_limit is None
    assert budget_slug("latency=33ms@512x1024") == "latency-33ms-512x1024"


def _results(spec: str, shift: float) -> dict:
    """A comparison's results.json as collect_results writes it, for one budget."""

    def run(cost: float, miou: float, folder: str) -> dict:
        return {"seed": 0, "status": "done", "folder": folder, "t_miou": miou, "cost": {"metric": "flops", "unit": "GFLOP", "measured": cost}}

    return {
        "entries": [
            {"name": "dcnas", "kind": "strategy", "runs": [run(0.4 + shift, 0.30 + shift, "a"), run(0.5 + shift, 0.32 + shift, "b")]},
            {"name": "spos", "kind": "strategy", "runs": [run(0.45 + shift, 0.28, "c")]},
            {"name": "preset:hrnet", "kind": "preset", "runs": [run(2.0, 0.35, "d")]},
            {"name": "random", "kind": "random", "runs": [run(0.3 + shift, 0.2, "e"), run(0.35 + shift, 0.25, "f")]},
        ]
    }


def test_two_budgets_write_the_pareto_plot_and_table(tmp_path):
    plan = Plan(load_config(None, []), ["dcnas", "spos"], [0])
    seen = []

    def fake_compare(p, out, **kwargs):
        seen.append((p.base.search.cost_limit, out))
        return _results(p.base.search.cost_limit, 0.0 if p.base.search.cost_limit == "flops=0.5G" else 0.3)

    by_budget = run_budgets(plan, tmp_path, ["flops=0.5G", "flops=1G"], fake_compare)
    assert [s for s, _ in seen] == ["flops=0.5G", "flops=1G"] and seen[0][1] == tmp_path / "budgets" / "flops-0.5G"
    assert len(by_budget) == 2
    points = json.loads((tmp_path / "pareto.json").read_text())
    assert [p["budget"] for p in points["fronts"]["dcnas"]] == ["flops=0.5G", "flops=1G"]
    assert points["strategies"]["dcnas"][0]["cost"] == pytest.approx(0.45) and points["presets"]["preset:hrnet"]["cost"] == 2.0
    assert len(points["random"]) == 4 and points["unit"] == "GFLOP"
    table = (tmp_path / "pareto.md").read_text()
    assert "| dcnas |" in table and "*" in table and "preset:hrnet" in table
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "pareto.svg").read_text()


def test_one_budget_writes_no_pareto(tmp_path):
    plan = Plan(load_config(None, []), ["dcnas"], [0])
    run_budgets(plan, tmp_path, ["flops=1G"], lambda p, out, **kw: _results("flops=1G", 0.0))
    assert not (tmp_path / "pareto.png").exists()
