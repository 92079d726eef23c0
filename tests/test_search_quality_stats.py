"""benchmarks/search_quality.py's statistics on hand-made results (the study itself runs for an hour)."""

from __future__ import annotations

import statistics

import pytest
from scipy import stats

from helpers import load_benchmark


def _module():
    return load_benchmark("search_quality")


def _row(entry, seed, miou, **extra):
    return {"entry": entry, "seed": seed, "t_miou": miou, "params": 1e5, "flops": 1e6, **extra}


def test_searched_against_random_and_presets():
    sq = _module()
    random = [0.20, 0.22, 0.21, 0.19, 0.23, 0.21]
    searched = [0.26, 0.25, 0.27]
    results = [_row("random", i % 3, m) for i, m in enumerate(random)] + [_row("preset:fcn", 0, 0.22), _row("preset:hrnet", 0, 0.24)]
    results += [_row("dcnas", s, m, margin_alpha_start=1e-4, margin_alpha_end=0.05, changed_ops=7) for s, m in enumerate(searched)]
    summary = sq.summarise(results, ["dcnas"])
    item = summary["entries"]["dcnas"]
    assert item["t_miou_mean"] == pytest.approx(0.26)
    vs = item["vs_random"]
    assert vs["diff"] == pytest.approx(0.26 - statistics.fmean(random))
    assert vs["diff_in_random_sd"] == pytest.approx(vs["diff"] / statistics.stdev(random))
    assert vs["welch_p"] == pytest.approx(stats.ttest_ind(searched, random, equal_var=False).pvalue)
    assert vs["diff_ci95"][0] < vs["diff"] < vs["diff_ci95"][1]
    assert summary["best_preset"] == ("preset:hrnet", 0.24)
    assert item["vs_best_preset"] == pytest.approx(0.02)
    assert item["targets_met"] == {"two_random_sd": True, "one_point_over_best_preset": True}
    table = sq.markdown(summary, ["dcnas"])
    assert "| dcnas | 3 | 0.2600 ± 0.0100 |" in table and "0.0001 -> 0.0500" in table and "hrnet (preset)" in table


def test_a_search_inside_the_random_spread_misses_the_targets():
    sq = _module()
    results = [_row("random", i, m) for i, m in enumerate([0.20, 0.24, 0.22, 0.18])] + [_row("dcnas", s, m) for s, m in enumerate([0.22, 0.23])]
    item = sq.summarise(results, ["dcnas"])["entries"]["dcnas"]
    assert item["targets_met"]["two_random_sd"] is False and item["vs_random"]["welch_p"] > 0.3


def test_variants_are_parsed():
    sq = _module()
    assert sq.parse_variant("lr0.03:dcnas:search.arch_lr=0.03,search.warmup_epochs=1") == ("lr0.03", "dcnas", ["search.arch_lr=0.03", "search.warmup_epochs=1"])
    with pytest.raises(SystemExit):
        sq.parse_variant("nostrategy")
