"""search.cost_limit: every strategy that takes a budget derives an architecture within it.

Tiny DCSS searches with a FLOPs limit (deterministic, unlike CPU latency) set between the space's
cheap and dear architectures: the sampling and evolutionary strategies (spos, rsws) never exceed it
(a hard constraint, checked before scoring); the differentiable ones reach it within a stated
tolerance with a high hinge weight; ProxylessNAS with its own loss and the limit as target.
final.json records the predicted and measured cost and whether the result is within the budget.
"""

from __future__ import annotations

import json

import pytest

from archgraph.config import load_config
from archgraph.core.choices import discover_choices
from archgraph.core.decode import decisions, uniform_scores
from archgraph.core.spaces_api import build_space
from archgraph.engine.search import run_search
from archgraph.errors import ConfigError

TINY = [
    "data.crop=[32,32]",
    "data.batch_size=2",
    "data.num_samples=12",
    "data.val_limit=2",
    "space.layers=2",
    "space.base_channels=4",
    "search.epochs=4",
    "search.warmup_epochs=1",
    "search.steps_per_epoch=3",
    "search.bn_recalib_batches=1",
    "search.eval_every=0",
]
TOLERANCE = 0.10  # the differentiable strategies: within 10% of the limit (the CamVid criterion)
STRATEGY_SETS = {
    "spos": ["strategy.population=4", "strategy.generations=2", "strategy.select=2", "strategy.mutation=2", "strategy.crossover=2", "strategy.recalib_batches=1"],
    "rsws": ["strategy.candidates=6"],
    "proxylessnas": ["strategy.hw_loss=add#linear", "strategy.hw_lambda=20", "strategy.arch_every=1", "strategy.arch_lr=0.3"],
    "dcnas": ["search.cost_weight=50", "search.arch_lr=0.3"],
    "darts": ["search.cost_weight=50", "search.arch_lr=0.3"],
    "pc_darts": ["search.cost_weight=50", "strategy.arch_lr=0.3"],
}
HARD = ("spos", "rsws")


def _space_costs(n: int = 40) -> list[float]:
    """Predicted GFLOPs of ``n`` uniform architectures of the tiny space at the tiny crop."""
    from archgraph.core.costmodel import CostModel

    graph = build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 5})
    model = CostModel(graph, "flops", (32, 32))
    choices = discover_choices(graph)
    return sorted(model.of_decisions(*decisions(choices, *uniform_scores(choices, seed))) for seed in range(n))


@pytest.fixture(scope="module")
def limit() -> float:
    costs = _space_costs()
    assert costs[0] < costs[-1], "the tiny space's architectures must differ in cost for the test to mean anything"
    return costs[len(costs) // 4]  # a quarter of uniform architectures fit: most of the space is over the budget


@pytest.mark.parametrize("name", sorted(STRATEGY_SETS))
def test_each_strategy_derives_an_architecture_within_its_budget(tmp_path, name, limit):
    spec = f"flops={limit:.9f}G"
    cfg = load_config(None, [*TINY, f"strategy.name={name}", f"search.cost_limit={spec}", *STRATEGY_SETS[name]])
    final = run_search(cfg, tmp_path, progress=False)
    cost = final["cost"]
    assert cost["limit"] == spec and cost["metric"] == "flops" and cost["measured"] > 0
    slack = 0.0 if name in HARD else TOLERANCE
    assert cost["predicted"] <= limit * (1 + slack) + 1e-12, (name, cost)
    assert json.loads((tmp_path / "final.json").read_text())["cost"]["predicted"] == cost["predicted"]
    if name == "spos":  # every candidate the evolution scored was within the limit
        from archgraph.core.costmodel import CostModel

        model = CostModel(build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 5}), "flops", (32, 32))
        for line in (tmp_path / "evolution.jsonl").read_text().splitlines():
            for cand in json.loads(line)["population"]:
                assert model.of_decisions(cand["ops"], cand["inputs"]) <= limit + 1e-12


def test_rsws_scores_only_candidates_within_the_budget(limit):
    """The selection stage's pool (rsws's topk:N:uniform) never holds an architecture over the limit."""
    from archgraph.core.costbudget import make_budget
    from archgraph.engine.selection.candidates import draw_candidates

    graph = build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 5})
    budget = make_budget(graph, f"flops={limit:.9f}G", (32, 32))
    pool = draw_candidates(discover_choices(graph), 8, seed=0, accept=lambda c: budget.within(*c))
    assert pool and all(budget.cost(*c) <= limit for c in pool)
    unfiltered = draw_candidates(discover_choices(graph), 8, seed=0)
    assert any(budget.cost(*c) > limit for c in unfiltered)  # the filter did something


def test_random_baselines_stay_within_the_budget(limit):
    from archgraph.studies.compare.baselines import budget_accept, random_architectures

    cfg = load_config(None, [*TINY, f"search.cost_limit=flops={limit:.9f}G"])
    space = build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 5})
    accept = budget_accept(space, cfg)
    archs = random_architectures(space, 3, seed=1, image_hw=(32, 32), accept=accept)
    from archgraph.core.costmodel import CostModel

    model = CostModel(space, "flops", (32, 32))
    assert len(archs) == 3 and all(model.of_graph(a) <= limit for _, a in archs)


def test_the_hinge_is_zero_inside_the_budget_and_grows_outside(limit):
    import torch

    from archgraph.core.costbudget import make_budget

    budget = make_budget(build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 5}), f"flops={limit}G", (32, 32))
    inside, outside = torch.tensor(0.9 * limit), torch.tensor(1.5 * limit, requires_grad=True)
    assert float(budget.hinge(inside)) == 0.0
    h = budget.hinge(outside)
    h.backward()
    assert float(h.detach()) == pytest.approx(0.5) and float(outside.grad) > 0


@pytest.mark.parametrize("bad", ["fast", "latency=33G", "speed=3ms"])
def test_a_wrong_cost_limit_is_refused_when_the_config_is_read(bad):
    with pytest.raises(ConfigError):
        load_config(None, [f"search.cost_limit={bad}"])


def test_a_table_without_a_limit_is_refused():
    with pytest.raises(ConfigError, match="cost_limit"):
        load_config(None, ["search.cost_table=table.json"])


def test_a_missed_budget_is_reported(tmp_path, capsys):
    """A limit below every architecture: the search still ends, with a warning line and the field."""
    tiny = min(_space_costs(10)) * 0.5
    cfg = load_config(None, [*TINY, "strategy.name=darts", f"search.cost_limit=flops={tiny:.9f}G", "search.epochs=2"])
    final = run_search(cfg, tmp_path, progress=False)
    assert final["cost"]["within_budget"] is False and final["cost"]["excess"] > 0
    assert "misses its budget" in capsys.readouterr().err


def test_the_benchmark_script_runs_in_smoke_mode(tmp_path, capsys):
    from helpers import load_benchmark

    bench = load_benchmark("cost_budget")
    assert bench.main(["--smoke", "--strategies", "dcnas,spos", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "cost_budget.json").read_text())
    assert [r["strategy"] for r in rows] == ["dcnas", "spos"] and all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 and r["remeasured_ms"] > 0 for r in rows)
    assert all(r["within"] for r in rows)  # a generous limit
    assert "predicted" in capsys.readouterr().out
    finished = (tmp_path / "dcnas" / "final.json").stat().st_mtime_ns
    assert bench.main(["--smoke", "--strategies", "dcnas,spos", "--out", str(tmp_path), "--rounds", "1"]) == 0  # read back and re-timed, not searched again
    again = json.loads((tmp_path / "cost_budget.json").read_text())
    assert [r["predicted_ms"] for r in again] == [r["predicted_ms"] for r in rows] and (tmp_path / "dcnas" / "final.json").stat().st_mtime_ns == finished


@pytest.mark.parametrize("name", ["dcnas", "darts"])
def test_the_hinge_reads_the_derived_architecture_and_steers_by_the_expected_cost(name):
    """The hinge is zero while the architecture the decoder derives now is within the limit, even
    when the expected cost of the soft distribution is above it (a hinge on the expected cost stopped
    derived networks at about 70% of a CamVid latency limit), and positive, with a gradient on alpha,
    once the derived one is over it."""

    from archgraph.config import SearchConfig
    from archgraph.configtools import dataclass_from_dict
    from archgraph.core.costbudget import make_budget
    from archgraph.core.registry import get_strategy

    info = get_strategy(name)
    graph = build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 5})
    strategy = info.cls(graph, dataclass_from_dict(info.params, {}, "strategy"), SearchConfig(), 0)
    strategy.begin_stage(0, None)
    net = strategy.build_supernet()
    strategy.on_epoch_start(1, 2)
    probe = make_budget(graph, "flops=1000G", (32, 32))
    strategy.budget = probe
    _, expected, derived = strategy.budget_hinge(net)
    expected = float(expected.detach())
    assert expected > derived > 0, "the soft distribution's expected cost must exceed the derived one for the test to mean anything"
    between = (derived + expected) / 2
    strategy.budget, strategy.budget_target, strategy.budget_epoch = make_budget(graph, f"flops={between:.9f}G", (32, 32)), None, -1
    hinge, _, _ = strategy.budget_hinge(net)
    assert float(hinge) == 0.0  # derived within the limit: no pressure, though E[cost] is over it
    below = derived / 2
    strategy.budget, strategy.budget_target, strategy.budget_epoch = make_budget(graph, f"flops={below:.9f}G", (32, 32)), None, -1
    hinge, _, reported = strategy.budget_hinge(net)
    assert float(hinge) == pytest.approx(reported / below - 1.0, rel=1e-6) and reported == pytest.approx(derived)
    hinge.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in net.arch_parameters())


def test_archgraph_select_holds_candidates_to_the_searchs_budget(tmp_path, limit):
    """`archgraph select` rebuilds the search's budget (it dropped it, and topk/proxy scored
    candidates over the limit): the pick is within the limit and the same as search.select's."""
    from archgraph.core.costmodel import CostModel
    from archgraph.core.graph import graph_hash, load
    from archgraph.studies.correlate.supernet import load_searched_supernet
    from archgraph.studies.reselect import select_from_run

    spec = f"flops={limit:.9f}G"
    settings = [*TINY, "search.epochs=2", f"search.cost_limit={spec}", "search.cost_weight=50"]
    run_search(load_config(None, [*settings, "search.select=topk:6:uniform"]), tmp_path / "run", progress=False)
    assert load_searched_supernet(tmp_path / "run").strategy.budget.spec == spec
    derived, _, record = select_from_run(tmp_path / "run", "topk:6:uniform")
    model = CostModel(build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 5}), "flops", (32, 32))
    assert model.of_graph(derived) <= limit + 1e-12
    assert graph_hash(derived) == graph_hash(load(tmp_path / "run" / "arch.yaml"))  # the search's own pick


def test_a_latency_table_measured_by_the_search_is_kept_and_reused(tmp_path, monkeypatch):
    """Without search.cost_table the search times a table; it is kept in the run folder, so a
    resume or `archgraph select` predicts with the same numbers instead of timing again."""
    import archgraph.core.costbudget as costbudget
    from archgraph.studies.correlate.supernet import load_searched_supernet

    settings = [*TINY, "search.epochs=2", "search.cost_limit=latency=1000ms@32x32"]
    run = tmp_path / "run"
    run_search(load_config(None, settings), run, progress=False)
    kept = run / costbudget.MEASURED_TABLE
    saved = json.loads(kept.read_text())
    assert saved["entries"] and saved["meta"]["calibration"]["archs"] == costbudget.ONTHEFLY_CALIBRATION

    def no_timing(*args, **kwargs):
        raise AssertionError("the kept table should have been read, not measured again")

    monkeypatch.setattr("archgraph.core.latencycal.calibrate_table", no_timing)
    monkeypatch.setattr("archgraph.core.latency.time_item_ms", no_timing)
    budget = load_searched_supernet(run).strategy.budget
    assert budget.model.table.entries == saved["entries"]
    assert json.loads(kept.read_text()) == saved
