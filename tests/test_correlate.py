"""The correlation study: statistics on known pairs, the bootstrap, candidate picking, `archgraph correlate` end to end."""

from __future__ import annotations

import json
import math

import pytest

import archgraph.engine.train as engine
from archgraph.core.choices import discover_choices
from archgraph.cli import main
from archgraph.studies.correlate import (
    bootstrap_ci,
    correlation_stats,
    correlation_summary,
    indices_of,
    kendall,
    one_hot_scores,
    pearson,
    spread_pick,
)
from archgraph.studies.correlate.stats import pick_of_k, scorer_stats, spearman, top_kendall
from archgraph.core.decode import decode, uniform_scores
from archgraph.core.graph import graph_hash

# ------------------------------------------------------------------------------------------------- statistics


def test_perfect_inverted_and_tied_pairs_give_the_known_values():
    x = [0.1, 0.2, 0.3, 0.4, 0.5]
    assert pearson(x, [2 * v + 1 for v in x]) == pytest.approx(1.0)
    assert kendall(x, [v**3 for v in x]) == pytest.approx(1.0)  # monotone, not linear: tau 1
    assert pearson(x, [-v for v in x]) == pytest.approx(-1.0)
    assert kendall(x, x[::-1]) == pytest.approx(-1.0)
    # ties: x = 1..4, y = 1,1,2,2. By hand: cov 2, sum of squares 5 and 1 -> rho = 2/sqrt(5);
    # 4 concordant, 0 discordant of 6 pairs, 2 tied in y -> tau-b = 4 / sqrt(6 * 4).
    assert pearson([1, 2, 3, 4], [1, 1, 2, 2]) == pytest.approx(2 / math.sqrt(5))
    assert kendall([1, 2, 3, 4], [1, 1, 2, 2]) == pytest.approx(4 / math.sqrt(24))
    # one discordant pair of 6: tau = (5 - 1) / 6
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # a constant side carries no ranking: undefined, not 0
    assert math.isnan(pearson([1, 2, 3], [5, 5, 5])) and math.isnan(kendall([1, 2, 3], [5, 5, 5]))


def test_spearman_and_top_kendall_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 40, 80]) == pytest.approx(1.0)  # monotone: 1, unlike Pearson
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(1 - 6 * 2 / (4 * 15))  # 1 - 6 sum d^2 / (n (n^2 - 1))
    # 10 architectures: a scorer that ranks the bottom 8 perfectly but the top ones backwards
    truth = list(range(10))
    score = list(range(8)) + [20, 19]  # top 20% by truth: indices 8 and 9, too few for a tau (3 needed)
    assert math.isnan(top_kendall(score, truth))
    truth15 = list(range(15))
    score15 = list(range(12)) + [30, 29, 28]  # top 3 of 15 by truth, scored in reverse
    assert top_kendall(score15, truth15) == pytest.approx(-1.0) and kendall(score15, truth15) > 0.8
    # a lower-is-better scorer is negated; non-finite values are left out and counted
    block = scorer_stats([4, 3, 2, 1, float("inf")], [1, 2, 3, 4, 5], higher_is_better=False, resamples=50)
    assert block["kendall"]["value"] == pytest.approx(1.0) and block["n"] == 4 and block["dropped"] == 1
    json.dumps(block, allow_nan=False)
    # an undefined statistic says why, and carries no interval from duplicate-padded resamples
    few = scorer_stats(score, truth, resamples=50)
    assert few["top_kendall"]["value"] is None and few["top_kendall"]["ci"]["low"] is None
    assert "top 20% of 10 is 2 architecture(s); it needs 3 (at least 11 architectures)" in few["top_kendall"]["why"]
    from archgraph.studies.correlate.report import fmt_stat

    assert fmt_stat(few["top_kendall"]).startswith("n/a (the top 20% of 10")
    assert scorer_stats([1, 2, 3], [5, 5, 5], resamples=20)["kendall"]["why"] == "a side is constant"


def test_pick_of_k_by_hand_and_against_simulation():
    """The scorer's best of K: one of K is a random pick (0), K = n is the scorer's top architecture,
    a perfect scorer is the oracle, a scorer that ties everything is random, and the exact value
    equals a simulation of the draws."""
    import numpy as np

    truth = [0.20, 0.25, 0.22, 0.30, 0.18, 0.27]
    sd, mean = float(np.std(truth, ddof=1)), float(np.mean(truth))
    assert pick_of_k(truth, truth, 1) == pytest.approx(0.0, abs=1e-12)
    assert pick_of_k(truth, truth, 6) == pytest.approx((0.30 - mean) / sd)
    assert pick_of_k([-t for t in truth], truth, 6) == pytest.approx((0.18 - mean) / sd)  # an inverted scorer keeps the worst
    assert pick_of_k([1.0] * 6, truth, 3) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(pick_of_k(truth, truth, 7)) and math.isnan(pick_of_k(truth, [0.2] * 6, 2))
    # best of 3 of {0.18, 0.20, 0.22, 0.25, 0.27, 0.30} by truth: P(top = 0.30) = 10/20, 0.27: 6/20, 0.25: 3/20, 0.22: 1/20
    assert pick_of_k(truth, truth, 3) == pytest.approx(((10 * 0.30 + 6 * 0.27 + 3 * 0.25 + 0.22) / 20 - mean) / sd)
    rng = np.random.default_rng(0)
    noisy = [t + e for t, e in zip(truth, rng.normal(0, 0.03, 6))]
    draws = [rng.choice(6, 3, replace=False) for _ in range(40000)]
    simulated = np.mean([truth[d[np.argmax([noisy[i] for i in d])]] for d in draws])
    assert pick_of_k(noisy, truth, 3) == pytest.approx((simulated - mean) / sd, abs=0.02)
    stats = scorer_stats(noisy + noisy + noisy + noisy, truth * 4)  # n = 24: both K reported, with the oracle
    assert stats["pick_of_8"]["oracle"] >= stats["pick_of_8"]["value"] and stats["pick_of_24"]["k"] == 24


def test_bootstrap_ci_contains_the_estimate_and_is_reproducible():
    import numpy as np

    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 0.6, 20)
    y = x + rng.normal(0, 0.05, 20)  # a clear but noisy relation
    for fn in (pearson, kendall):
        est = fn(x, y)
        ci = bootstrap_ci(x, y, fn, resamples=500, seed=3)
        assert ci.low <= est <= ci.high, (fn.__name__, est, ci)
        assert -1 <= ci.low < ci.high <= 1
        assert ci.valid == 500
        assert bootstrap_ci(x, y, fn, resamples=500, seed=3) == ci  # same seed, same interval
        assert bootstrap_ci(x, y, fn, resamples=500, seed=4) != ci
        assert bootstrap_ci(x, y, fn, resamples=500, seed=3, level=0.5).high < ci.high  # a lower level is narrower
    # no relation at all: the interval straddles 0
    noise = rng.uniform(0, 1, 20)
    ci = bootstrap_ci(x, noise, pearson, resamples=500, seed=0)
    assert ci.low < 0 < ci.high
    # a constant side: no valid resample, an undefined interval rather than a made-up one
    ci = bootstrap_ci([1, 2, 3], [4, 4, 4], pearson, resamples=50)
    assert ci.valid == 0 and math.isnan(ci.low)
    stats = correlation_stats([1, 2, 3, 4], [1, 2, 3, 4], resamples=200)
    assert stats["pearson"]["value"] == pytest.approx(1.0) and stats["kendall"]["ci"]["resamples"] == 200
    json.dumps(correlation_stats([1, 2, 3], [4, 4, 4], resamples=20), allow_nan=False)  # NaN -> null: valid JSON


def test_spread_pick_covers_the_score_range():
    scores = [0.50, 0.10, 0.11, 0.12, 0.13, 0.90, 0.30, 0.70]
    picked = spread_pick(scores, 3)
    assert [scores[i] for i in picked] == [0.10, 0.50, 0.90]  # min, middle, max, not the crowded bottom
    assert len(set(spread_pick(scores, 5))) == 5
    assert sorted(spread_pick(scores, 20)) == list(range(len(scores)))
    flat = spread_pick([0.2] * 6, 3)
    assert len(set(flat)) == 3


def test_indices_of_a_derived_graph_decode_back_to_it(tiny_space):
    choices = discover_choices(tiny_space)
    for seed in range(5):
        arch = decode(tiny_space, *uniform_scores(choices, seed))
        op_idx, input_idx = indices_of(choices, arch)
        assert graph_hash(decode(tiny_space, *one_hot_scores(choices, op_idx, input_idx))) == graph_hash(arch)


# ------------------------------------------------------------------------------------------------- end to end

TINY = [
    "space.layers=2",
    "space.base_channels=4",
    "data.num_samples=16",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "search.epochs=1",
    "search.warmup_epochs=0",
    "search.steps_per_epoch=3",
    "search.bn_recalib_batches=1",
    "data.val_limit=4",
    "train.epochs=1",
    "train.steps_per_epoch=3",
]


def correlate(out, cache, *extra, sets=()):
    return main(["correlate", "--archs", "4", "--out", str(out), "--cache", str(cache), "--pool", "8", "--quick-val", "2", "--bootstrap", "200", "--no-progress", *extra, "--set", *TINY, *sets])


@pytest.fixture
def trainings(monkeypatch):
    seen: list[str] = []
    real = engine.run_training

    def counting(cfg, graph, out, **kw):
        seen.append(str(out))
        return real(cfg, graph, out, **kw)

    monkeypatch.setattr(engine, "run_training", counting)
    return seen


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("correlate")
    assert correlate(root / "study", root / "cache", "--strategy", "dcnas") == 0
    return root


def test_correlate_writes_the_study(study):
    out = study / "study"
    for name in ("correlation.json", "correlation.md", "correlation.png", "correlation.svg"):
        assert (out / name).is_file() and (out / name).stat().st_size > 100, name
    result = json.loads((out / "correlation.json").read_text())
    archs = result["archs"]
    assert result["strategy"] == "dcnas" and result["n"] == 4 and len(archs) == 4
    assert [a["source"] for a in archs].count("derived") == 1 and len({a["arch_hash"] for a in archs}) == 4
    derived = next(a for a in archs if a["source"] == "derived")
    assert derived["arch_hash"] == json.loads((out / "search" / "final.json").read_text())["arch_hash"]
    # the derived architecture's supernet score is S-mIoU's measurement on the selection split; on val it is the search's S-mIoU
    from archgraph.engine.smiou import score_subnet, subnet_miou
    from archgraph.studies.correlate import derived_candidate, load_searched_supernet

    sup = load_searched_supernet(out / "search")
    d = derived_candidate(sup)
    assert derived["supernet_miou"] == pytest.approx(score_subnet(sup.net, sup.strategy.relaxation, d.op_idx, d.input_idx, sup.data, sup.cfg, sup.device), abs=1e-9)
    on_val = subnet_miou(sup.net, sup.strategy.relaxation, d.op_idx, d.input_idx, sup.data, sup.cfg, sup.device, sup.data.val)
    assert on_val == pytest.approx(json.loads((out / "search" / "final.json").read_text())["s_miou"], abs=1e-9)
    xs, ys = [a["supernet_miou"] for a in archs], [a["standalone_miou"] for a in archs]
    assert all(0 <= v <= 1 for v in xs + ys)
    if result["pearson"]["value"] is not None:
        assert result["pearson"]["value"] == pytest.approx(pearson(xs, ys))
    if result["kendall"]["value"] is not None:
        assert result["kendall"]["value"] == pytest.approx(kendall(xs, ys))
    for a in archs:
        assert (out / a["file"]).is_file()
        assert json.loads(open(a["cache_entry"] + "/metrics.json").read())["miou"] == a["standalone_miou"]
    # picked samples span the pre-score range of the pool
    quick = sorted(a["quick_score"] for a in archs if a["source"] == "sample")
    assert quick[0] == pytest.approx(result["pool"]["quick_range"][0]) and quick[-1] == pytest.approx(result["pool"]["quick_range"][1])
    assert "Kendall tau-b" in (out / "correlation.md").read_text()
    # every scorer, with the four statistics and their intervals, against the same stand-alone mIoU
    from archgraph.engine.scoring import scorer_names

    scorers = result["scorers"]
    assert list(scorers)[0] == "supernet" and set(scorers) == set(scorer_names()) - {"train"}
    for name, block in scorers.items():
        assert set(block) >= {"pearson", "spearman", "kendall", "top_kendall", "n", "higher_is_better"}, name
        assert block["kendall"]["ci"]["resamples"] == 200
        values = [a["supernet_miou"] if name == "supernet" else a["scores"][name] for a in archs]
        if block["spearman"]["value"] is not None:
            assert block["spearman"]["value"] == pytest.approx(spearman(values, ys))
    assert {k: v for k, v in result["kendall"].items() if k != "p_value"} == scorers["supernet"]["kendall"]  # the headline row
    md = (out / "correlation.md").read_text()
    assert "top-20% Kendall" in md and "| synflow |" in md and "0.73" in md  # the paper's Table 1 next to ours


def test_reusing_the_search_trains_nothing_again_and_summary(study, trainings):
    search = study / "study" / "search"
    assert correlate(study / "study", study / "cache", "--strategy", "dcnas") == 0  # the same command again (after a kill)
    assert trainings == []  # the finished search is reused, the stand-alone runs come from the cache
    assert correlate(study / "again", study / "cache", "--search-dir", str(search)) == 0
    assert trainings == []  # every stand-alone run came from the cache
    first = json.loads((study / "study" / "correlation.json").read_text())
    again = json.loads((study / "again" / "correlation.json").read_text())
    assert [a["standalone_miou"] for a in again["archs"]] == [a["standalone_miou"] for a in first["archs"]]
    assert again["pearson"] == first["pearson"]  # same seeds: the same bootstrap interval
    # another training recipe is another cache entry: everything is trained (once per architecture)
    assert correlate(study / "longer", study / "cache", "--search-dir", str(search), sets=["train.lr=0.02"]) == 0
    assert len(trainings) == 4 and len(set(trainings)) == 4
    summary = correlation_summary(study / "study")
    assert summary["strategy"] == "dcnas" and summary["n"] == 4 and summary["pearson"] == first["pearson"]["value"]
    assert set(summary) >= {"pearson_low", "pearson_high", "kendall", "kendall_low", "kendall_high", "level", "path"}
    assert correlation_summary(search) == summary  # from the search folder inside the study
    assert correlation_summary(study / "nothing-here") == {}


def test_jobs_2_gives_the_same_study(study):
    """The scoring and the trainings on two worker processes (a fresh cache: they really train)."""
    search = study / "study" / "search"
    assert correlate(study / "jobs2", study / "cache-jobs2", "--search-dir", str(search), "--jobs", "2") == 0
    first = json.loads((study / "study" / "correlation.json").read_text())
    again = json.loads((study / "jobs2" / "correlation.json").read_text())
    same = ("arch_hash", "source", "sample_seed", "quick_score", "supernet_miou", "standalone_miou", "standalone_pixel_acc", "params", "flops")
    assert [{k: a[k] for k in same} for a in again["archs"]] == [{k: a[k] for k in same} for a in first["archs"]]
    assert again["pearson"] == first["pearson"] and again["kendall"] == first["kendall"]
    assert len(list((study / "cache-jobs2").glob("*/*/metrics.json"))) == 4
    assert "stand-alone 2/4" in (study / "jobs2" / "jobs" / "train-1.log").read_text()  # a worker's output, in its job's log


def test_bad_input_fails_clearly(study, capsys):
    search = study / "study" / "search"
    assert correlate(study / "bad", study / "cache", "--search-dir", str(search), "--strategy", "spos") == 2
    assert "--strategy spos" in capsys.readouterr().err
    assert correlate(study / "bad", study / "cache", "--search-dir", str(search), sets=["data.crop=[64,64]"]) == 2
    assert "'data'" in capsys.readouterr().err
    assert main(["correlate", "--archs", "2", "--out", str(study / "bad"), "--cache", str(study / "cache")]) == 2
    assert "at least 3" in capsys.readouterr().err
    assert correlate(study / "bad", study / "cache", "--search-dir", str(study / "missing")) == 2
    assert "not a search run folder" in capsys.readouterr().err
    # an interrupted OUT/search resumes only with the settings asked for (--strategy was ignored there)
    import shutil

    shutil.copytree(search, study / "killed" / "search")
    (study / "killed" / "search" / "final.json").unlink()
    assert correlate(study / "killed", study / "cache", "--strategy", "pc_darts") == 2
    err = capsys.readouterr().err
    assert "holds an unfinished search with another 'strategy' section (strategy 'dcnas')" in err, err
