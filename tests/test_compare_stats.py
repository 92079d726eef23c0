"""The comparison's statistics, degenerate flags, full-grid pictures, plan refusals, the budget check
before the first run and the report of a study whose every run failed (tiny, mostly without training)."""

from __future__ import annotations

import json
import math
import re

import pytest

from archgraph import build_space
from archgraph.config import load_config
from archgraph.core.decode import sample_architecture
from archgraph.errors import ConfigError
from archgraph.outputs.render import grid_frame, to_dot
from archgraph.studies.compare import Plan, check_plan, parse_baselines, run_compare
from archgraph.studies.compare.stats import compare_groups, holm, interval, percentile_among, permutation_p, study_statistics, welch
from helpers import TINY_COMPARE

TINY = TINY_COMPARE


def test_interval_tests_and_holm_match_hand_computed_numbers():
    ci = interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.302653
    assert ci["mean"] == 2.0 and ci["sd"] == 1.0
    assert ci["ci"] == pytest.approx([2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)], abs=1e-5)
    assert interval([0.5])["ci"] is None and interval([])["mean"] is None
    # Welch: means 2 and 5.5, variances 1 and 5/3: t = -3.5 / sqrt(1/3 + 5/12)
    t, p = welch([1, 2, 3], [4, 5, 6, 7])
    assert t == pytest.approx(-3.5 / math.sqrt(0.75)) and 0 < p < 0.05
    assert welch([1.0], [2.0, 3.0]) == (None, None)
    # exact permutation: of the 6 splits of {1,2,3,4}, two are as far apart as {1,2} vs {3,4}
    assert permutation_p([1, 2], [3, 4]) == pytest.approx(2 / 6)
    assert compare_groups([1, 2], [3, 4])["test"] == "permutation"
    # neither side varies (n >= SMALL_N): Welch is undefined, the exact test is not: 2 of C(10, 5) splits
    flat = compare_groups([0.5] * 5, [0.3] * 5)
    assert flat["test"] == "permutation" and flat["p"] == pytest.approx(2 / 252) and flat["welch_p"] is None
    # Holm on (0.01, 0.04, 0.03): 3 x 0.01, max(2 x 0.03, .), max(1 x 0.04, 0.06)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, None, 0.9]) == [pytest.approx(0.4), None, pytest.approx(0.9)]  # None: no test, not in the family
    assert percentile_among(0.5, [0.1, 0.5, 0.9, 1.0]) == 37.5
    # the floor of p a plan can reach: 3 v 3 has 20 orderings and a mirror (0.1), 3 v 8 has 165 (1/165)
    from archgraph.studies.compare.stats import significance_floor_note, smallest_p

    assert smallest_p(3, 3) == pytest.approx(0.1) and smallest_p(3, 8) == pytest.approx(1 / 165) and smallest_p(5, 6) == 0.0
    assert "--baselines random:4" in significance_floor_note(3, 3, 1)  # 1/35 < 0.05
    assert significance_floor_note(3, 8, 7) is None and significance_floor_note(3, 8, 0) is None
    assert "after Holm over 9 entries" in significance_floor_note(3, 8, 9)  # 9/165 = 0.055


def _entry(name, kind, scores, **run_extra):
    return {"name": name, "kind": kind, "space": {"layers": 2}, "runs": [{"seed": i, "status": "done", "t_miou": s, **run_extra} for i, s in enumerate(scores)]}


def test_degenerate_results_are_flagged_and_strategies_tested_against_random():
    single = {"single_class": True}
    entries = [
        _entry("dcnas", "strategy", [0.3, 0.3, 0.3], search_warning="warning: the derived architecture cannot be told from the initialisation"),
        _entry("pc_darts", "strategy", [0.4, 0.42, 0.44]),
        _entry("spos", "strategy", [0.3, 0.3, 0.3], **single),
        _entry("random", "random", [0.2, 0.25, 0.3, 0.35]),
    ]
    st = study_statistics(entries)
    flags = st["flags"]
    assert any("zero spread" in f for f in flags["dcnas"]) and any("cannot be told from the initialisation" in f for f in flags["dcnas"])
    assert any("tied with spos" in f for f in flags["dcnas"])
    assert any("majority-class" in f for f in flags["spos"])
    assert flags["pc_darts"] == [] and flags["random"] == []
    vs = {n: st["entries"][n]["vs_random"] for n in ("dcnas", "pc_darts", "spos")}
    assert vs["pc_darts"]["test"] == "permutation" and vs["pc_darts"]["diff"] == pytest.approx(0.42 - 0.275)
    assert vs["pc_darts"]["percentile_among_random"] == 100.0
    sd_random = 0.0645497  # sample sd of (0.2, 0.25, 0.3, 0.35)
    assert vs["pc_darts"]["effect_random_sd"] == pytest.approx((0.42 - 0.275) / sd_random, rel=1e-4)
    assert [vs[n]["p_holm"] for n in ("dcnas", "pc_darts", "spos")] == pytest.approx(holm([vs[n]["p"] for n in ("dcnas", "pc_darts", "spos")]))
    assert len(st["pairs"]) == 3 and all(p["p_holm"] is not None for p in st["pairs"])
    entries[1]["space"] = {"layers": 8}  # another space: no test against these random architectures
    assert "skipped" in study_statistics(entries)["entries"]["pc_darts"]["vs_random"]


def _positions(dot: str) -> dict[str, str]:
    return dict(re.findall(r'^\t(\w+) \[.*?pos="([^"]+)"', dot, flags=re.M))


def test_topologies_share_the_supernets_full_grid():
    space = build_space("dcss", {"layers": 3, "base_channels": 4, "num_classes": 3})
    archs = [sample_architecture(space, s) for s in range(4)]
    frame = grid_frame(archs, space)
    drawn = [_positions(to_dot(a, frame=frame)) for a in archs]
    for a, pos in zip(archs, drawn):
        assert set(pos) == set(a.nodes)
    common = set.intersection(*(set(p) for p in drawn))
    assert len(common) > 5 and all(len({p[n] for p in drawn}) == 1 for n in common)
    # every layer keeps its column: an architecture without a layer-1 node at 1/4 still names "layer 1"
    assert all('"layer 1"' in to_dot(a, frame=frame) or "layer 1" in to_dot(a, frame=frame) for a in archs)
    alone = [_positions(to_dot(a)) for a in archs]  # without the frame the places differ somewhere
    assert any(len({p[n] for p in alone}) > 1 for n in common)


def test_a_smaller_plan_is_refused_and_a_larger_one_extends(tmp_path):
    base = load_config(None, TINY)
    full = Plan(base, ["dcnas", "pc_darts"], [0, 1], parse_baselines("preset:fcn,random:3"))
    check_plan(full, tmp_path)
    with pytest.raises(ConfigError, match=r"larger plan.*strategy pc_darts.*seed 1.*random:3 \(now random:2\).*--strategies dcnas,pc_darts --seeds 0,1"):
        check_plan(Plan(base, ["dcnas"], [0], parse_baselines("preset:fcn,random:2")), tmp_path)
    with pytest.raises(ConfigError, match="another config .*search.epochs: 1 -> 2"):
        check_plan(Plan(load_config(None, [*TINY, "search.epochs=2"]), ["dcnas", "pc_darts"], [0, 1], full.baselines), tmp_path)
    bigger = Plan(base, ["dcnas", "pc_darts", "spos"], [0, 1, 2], parse_baselines("preset:fcn,random:4"))
    check_plan(bigger, tmp_path)
    assert json.loads((tmp_path / "compare.json").read_text())["strategies"] == ["dcnas", "pc_darts", "spos"]


def _never(*args, **kwargs):
    raise AssertionError("nothing may run")


def test_an_impossible_budget_is_refused_for_every_strategy_before_the_first_run(tmp_path):
    plan = Plan(load_config(None, TINY), ["dcnas", "proxylessnas"], [0], [], strategy_options={"proxylessnas": {"arch_every": 5}})
    with pytest.raises(ConfigError, match=r"1 of 2 searches .*proxylessnas: this search would take no architecture step.*arch_every=5"):
        run_compare(plan, tmp_path / "cmp", progress=False, search_fn=_never, train_fn=_never)
    assert not (tmp_path / "cmp" / "compare.json").exists() and not (tmp_path / "cmp" / "runs").exists()


def _fail(*args, **kwargs):
    raise RuntimeError("unknown space 'dcss'")


def test_a_study_whose_every_run_failed_still_writes_its_report(tmp_path):
    plan = Plan(load_config(None, TINY), ["dcnas"], [0], parse_baselines("random:2"))
    out = tmp_path / "cmp"
    results = run_compare(plan, out, progress=False, log=lambda m: None, search_fn=_fail, train_fn=_fail)
    assert all(r["status"] == "failed" for e in results["entries"] for r in e["runs"])
    for name in ("results.json", "results.md", "report.html", "checklist.md"):
        assert (out / name).is_file()
    assert "unknown space" in (out / "results.md").read_text() and "unknown space" in (out / "report.html").read_text()
    checklist = (out / "checklist.md").read_text()
    assert "**Seeds**" in checklist and "Code version" in checklist and "rsws" in checklist


def test_both_named_studies_plan_from_their_names_at_both_sizes():
    """--study dcnas-table5 / dcnas-table6: every entry of the paper's tables, at each size."""
    from archgraph.studies.compare.studies import get_study, study_variants

    t5 = study_variants(get_study("dcnas-table5", "cpu"), "cpu", 1.0)
    assert len(t5) == 20  # five strategies x L = 8, 10, 12, 14
    assert {v["set"]["space"]["layers"] for v in t5.values()} == {8, 10, 12, 14}
    assert {v["strategy"] for v in t5.values()} == {"dcnas", "pc_darts", "proxylessnas", "p_darts", "spos"}
    for size in ("cpu", "gpu"):
        t6 = study_variants(get_study("dcnas-table6", size), size, 1.0)
        assert set(t6) == {"dcnas@full", "dcnas@all-paths", "dcnas@all-channels", "dcnas@proxy", "dcnas@previous"}
        assert all(v["strategy"] == "dcnas" for v in t6.values())
        assert t6["dcnas@proxy"]["search_set"] == {"data": {"scale": 0.5}}  # the low-resolution proxy searches at half the scale
    with pytest.raises(ConfigError, match="not a named study"):
        get_study("dcnas-table7", "cpu")
    with pytest.raises(ConfigError, match="--size"):
        get_study("dcnas-table5", "tpu")
