"""search.budget: what every search spent, read from its records (final.json), not from its config.

equal-steps gives every built-in strategy the same weight and architecture steps; official keeps each
paper's ratios (P-DARTS: search.epochs per stage); equal-time plans its epochs on a calibration and
stops at the clock; the totals survive a resume; the FLOP counter agrees with torch's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from archgraph.config import load_config
from archgraph.core.registry import get_strategy, list_strategies
from archgraph.configtools import dataclass_from_dict
from archgraph.core.spaces_api import build_space
from archgraph.engine import budget as B
from archgraph.engine.search import run_search
from archgraph.engine.spend import SpendMeter
from archgraph.testing import check_settings

TINY = [
    "data.crop=[32,32]",
    "data.batch_size=2",
    "data.num_samples=16",
    "data.val_limit=2",
    "space.layers=2",
    "space.base_channels=4",
    "search.epochs=4",
    "search.warmup_epochs=1",
    "search.steps_per_epoch=2",
    "search.bn_recalib_batches=1",
    "search.eval_every=0",
]
SMALL_END = {  # end-of-search work kept tiny (SPOS's evolution, rsws's random sample) where a strategy has it
    "spos": ["strategy.population=4", "strategy.generations=2", "strategy.select=2", "strategy.mutation=2", "strategy.crossover=2", "strategy.recalib_batches=1"],
}


def _options(name: str) -> list[str]:
    """The strategy's check options (its tiny end-of-search work) as --set items, P-DARTS's stages left at the paper's 3."""
    if name in SMALL_END:
        return SMALL_END[name]
    opts = dict(check_settings(get_strategy(name).cls).options)
    if name == "p_darts":
        opts = {}
    return [f"strategy.{k}={json.dumps(v)}" for k, v in opts.items()]


def _search(tmp_path: Path, name: str, *extra: str) -> dict:
    out = tmp_path / f"{name}-{abs(hash(extra))}"
    cfg = load_config(None, TINY + [f"strategy.name={name}", *_options(name), *extra])
    run_search(cfg, out, progress=False)
    return json.loads((out / "final.json").read_text())


def test_equal_steps_gives_every_strategy_the_same_steps(tmp_path):
    records = {info.name: _search(tmp_path, info.name, "search.budget=equal-steps") for info in list_strategies()}
    assert {"dcnas", "darts", "pc_darts", "p_darts", "proxylessnas", "spos"} <= set(records)
    assert {r["budget"] for r in records.values()} == {"equal-steps"}
    weight = {n: r["spent"]["weight_steps"] for n, r in records.items()}
    assert set(weight.values()) == {4 * 2}, weight
    gradient = {n: r["spent"]["arch_steps"] for n, r in records.items() if "arch_steps_note" not in r}
    assert set(gradient.values()) == {(4 - 1) * 2}, gradient  # one per weight step after the warm-up epoch
    assert {"dcnas", "darts", "pc_darts", "p_darts", "proxylessnas"} <= set(gradient)
    by_design = {n: r["spent"]["arch_steps"] for n, r in records.items() if "arch_steps_note" in r}
    assert "spos" in by_design and set(by_design.values()) == {0}
    assert records["p_darts"]["stage_epochs"] == [1, 1, 2]  # search.epochs spread over its three stages
    for r in records.values():
        assert r["spent"]["images"] > 0 and r["spent"]["forward_gflop"] > 0 and r["spent"]["wall_seconds"] > 0


def test_official_p_darts_runs_every_stage_for_search_epochs(tmp_path):
    base = ["search.epochs=2"]
    dcnas = _search(tmp_path, "dcnas", *base)["spent"]
    pdarts = _search(tmp_path, "p_darts", *base)
    assert pdarts["budget"] == "official" and pdarts["stage_epochs"] == [2, 2, 2]
    assert pdarts["spent"]["weight_steps"] == 3 * dcnas["weight_steps"] == 3 * 2 * 2


def test_official_proxylessnas_takes_an_architecture_step_per_five(tmp_path):
    official = _search(tmp_path, "proxylessnas", "data.num_samples=20", "search.steps_per_epoch=5", "search.epochs=2")["spent"]
    equal = _search(tmp_path, "proxylessnas", "data.num_samples=20", "search.steps_per_epoch=5", "search.epochs=2", "search.budget=equal-steps")["spent"]
    assert (official["weight_steps"], official["arch_steps"]) == (10, 1)
    assert (equal["weight_steps"], equal["arch_steps"]) == (10, 5)
    assert equal["images"] == official["images"] + 4 * 2  # trainB batches count only when an architecture step used them


def test_resume_keeps_the_totals(tmp_path, monkeypatch):
    import archgraph.engine.search as engine
    from archgraph.engine.checkpoint import save_checkpoint

    cfg = lambda: load_config(None, TINY + ["strategy.name=dcnas", "search.checkpoint_every=1"])
    run_search(cfg(), tmp_path / "full", progress=False)
    full = json.loads((tmp_path / "full" / "final.json").read_text())["spent"]

    def die(path, obj):
        save_checkpoint(path, obj)
        if obj["epoch"] == 1 and obj["step"] == 1 and not obj["finished_epoch"]:
            raise KeyboardInterrupt

    monkeypatch.setattr(engine, "save_checkpoint", die)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        run_search(cfg(), tmp_path / "killed", progress=False)
    monkeypatch.undo()
    run_search(cfg(), tmp_path / "killed", resume=True, progress=False)
    resumed = json.loads((tmp_path / "killed" / "final.json").read_text())["spent"]
    for key in ("weight_steps", "arch_steps", "images"):
        assert resumed[key] == full[key], key
    assert resumed["forward_gflop"] == pytest.approx(full["forward_gflop"], rel=1e-9)
    lines = [json.loads(l) for l in (tmp_path / "killed" / "search.jsonl").read_text().splitlines()]
    assert [l["spent"]["weight_steps"] for l in lines] == [2, 4, 6, 8]  # running totals per epoch


def test_the_flop_counter_counts_what_torch_counts():
    cfg = load_config(None, TINY)
    info = get_strategy("darts")
    strategy = info.cls(build_space("dcss", {**cfg.space_params, "num_classes": 3}), dataclass_from_dict(info.params, {}, "strategy"), cfg.search, 0)
    net = strategy.build_supernet()
    meter = SpendMeter()
    meter.watch(net, torch.optim.SGD(net.weight_parameters(), lr=0.1), None)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    assert meter.images == 2 and meter.flops == counter.get_total_flops() > 0
    with meter.paused(), torch.no_grad():
        net(x)
    assert meter.images == 2  # a paused pass (the S-mIoU report) costs nothing


def _make(name: str, cfg):
    info = get_strategy(name)
    params = dataclass_from_dict(info.params, cfg.strategy_params, "strategy")
    return lambda search: info.cls(build_space("dcss", {**cfg.space_params, "num_classes": 3}), params, search, 0)


def test_equal_time_plans_the_epochs_that_fit():
    cfg = load_config(None, TINY + ["search.budget=equal-time", "search.time_budget_s=10.5"])
    # 2 steps per epoch; 1 s per weight-only step, 2 s per step with architecture steps; 1 warm-up epoch
    epochs, estimate = B._fit(_make("dcnas", cfg), cfg.search, [(1.0, 2.0)], 2)
    assert (epochs, estimate) == (3, 2 * 1.0 + 2 * 2 * 2.0)
    cfg = load_config(None, TINY + ["strategy.name=p_darts", "search.budget=equal-time", "search.time_budget_s=29"])
    # P-DARTS: three stages of 1, 2 and 3 s per step, the epochs spread over them as under equal-steps:
    # 6 epochs = stages of [1, 2, 3] epochs (28 s); 7 = [2, 2, 3] (30 s) would not fit
    times = [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]
    make = _make("p_darts", cfg)
    assert B._fit(make, cfg.search, times, 2) == (6, 2 * (1 * 1 + 2 * 2 + 3 * 3))
    assert B._estimate(make(dataclasses.replace(cfg.search, epochs=7)), times, 2) == 30


def test_equal_time_stops_at_the_clock_and_says_so(tmp_path, monkeypatch):
    # A calibration that claims steps are nearly free plans hundreds of epochs; the clock must cut them.
    monkeypatch.setattr("archgraph.engine.budget.calibrate", lambda *a, **k: [(1e-4, 1e-4)])
    cfg = load_config(None, TINY + ["strategy.name=dcnas", "search.budget=equal-time", "search.time_budget_s=0.05"])
    run_search(cfg, tmp_path / "cut", progress=False)
    final = json.loads((tmp_path / "cut" / "final.json").read_text())
    plan = final["time_budget"]
    assert final["budget"] == "equal-time" and plan["epochs"] > 100 and plan["cut_by_clock"]
    assert plan["step_seconds_spent"] >= 0.05
    assert 1 <= final["spent"]["weight_steps"] < plan["epochs"] * 2
    assert json.loads((tmp_path / "cut" / B.PLAN_FILE).read_text())["epochs"] == plan["epochs"]


def test_equal_time_calibration_leaves_the_search_as_equal_steps(tmp_path):
    cfg = load_config(None, TINY + ["strategy.name=dcnas", "search.budget=equal-time", "search.time_budget_s=1.5", "search.calibration_steps=1"])
    run_search(cfg, tmp_path / "time", progress=False)
    final = json.loads((tmp_path / "time" / "final.json").read_text())
    epochs = final["time_budget"]["epochs"]
    assert epochs >= 2 and final["stage_epochs"] == [epochs]
    same = load_config(None, TINY + ["strategy.name=dcnas", "search.budget=equal-steps", f"search.epochs={epochs}"])
    run_search(same, tmp_path / "steps", progress=False)
    first = lambda d: json.loads((tmp_path / d / "search.jsonl").read_text().splitlines()[0])
    # the calibration restored every random state: the first epoch (never cut by the clock) is the same
    assert first("time")["loss"] == first("steps")["loss"] and first("time")["arch_hash"] == first("steps")["arch_hash"]


def test_equal_time_needs_a_budget(tmp_path):
    from archgraph.errors import ConfigError

    with pytest.raises(ConfigError, match="time_budget_s"):
        run_search(load_config(None, TINY + ["search.budget=equal-time"]), tmp_path / "x", progress=False)


def test_the_checklist_holds_strategies_without_architecture_steps_to_their_weight_steps():
    from archgraph.studies.compare.checklist import _spent_equal

    def run(w, a, note=None):
        return {"status": "done", "spent": {"weight_steps": w, "arch_steps": a}, **({"arch_steps_note": note} if note else {})}

    def results(*entries):
        return {"entries": [{"name": n, "kind": "strategy", "runs": runs} for n, runs in entries]}

    equal = results(("darts", [run(240, 180)]), ("spos", [run(240, 0, "no architecture steps by design")]))
    assert _spent_equal(equal) == "yes: every search took 240 weight steps and 180 architecture steps (spos: none, by design)"
    unequal = results(("darts", [run(240, 180)]), ("spos", [run(200, 0, "by design")]))
    assert _spent_equal(unequal).startswith("no:")
    missing = results(("darts", [run(240, 180)]), ("pc_darts", [run(240, 0)]))  # no steps but not by design: a difference
    assert _spent_equal(missing).startswith("no:")
