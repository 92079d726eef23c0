"""Scorers behind one interface: the registry, the supernet scorer, proxies on a DCSS candidate, `archgraph score`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from archgraph.cli import main
from archgraph.errors import ConfigError
from archgraph.engine.scoring import ScoringContext, candidate_graph, get_scorer, parse_scorers, register_scorer, scorer_names

from helpers import search_run

BUILTIN = {"supernet", "synflow", "naswot", "grad_norm", "snip", "jacov", "params", "flops", "train"}


def test_registry_names_every_builtin_and_refuses_bad_specs():
    assert BUILTIN <= set(scorer_names())
    for name in BUILTIN:
        s = get_scorer(name)
        assert s.name == name and isinstance(s.higher_is_better, bool)
        assert s.needs_trained_supernet == (name == "supernet")
    assert get_scorer("supernet:3").recalib_batches == 3
    with pytest.raises(ConfigError, match="did you mean 'synflow'"):
        get_scorer("synflw")
    with pytest.raises(ConfigError, match="takes"):
        get_scorer("synflow:2")
    with pytest.raises(ConfigError, match="at least 1"):
        get_scorer("supernet:0")
    with pytest.raises(ConfigError, match="twice"):
        parse_scorers("params,params")


def test_a_plugin_scorer_registers_by_name(monkeypatch):
    from archgraph.engine import scoring

    scoring.scorer_names()  # the built-ins loaded, then a private copy of the registry for this test
    monkeypatch.setattr(scoring.SCORER_REGISTRY, "table", dict(scoring.SCORER_REGISTRY.table))
    monkeypatch.setattr(scoring, "_SCORERS", scoring.SCORER_REGISTRY.table)

    @register_scorer("test_depth")
    class Depth:
        name = "test_depth"
        higher_is_better = False
        needs_trained_supernet = False

        def score(self, ctx, candidates):
            return [float(len(candidate_graph(ctx.graph, c))) for c in candidates]

    assert "test_depth" in scorer_names() and get_scorer("test_depth").higher_is_better is False


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return search_run(tmp_path_factory.mktemp("scoring") / "search")


@pytest.fixture(scope="module")
def loaded(run):
    from archgraph.studies.correlate import load_searched_supernet
    from archgraph.studies.correlate.candidates import sample_pool
    from archgraph.studies.correlate.scores import scoring_context

    sup = load_searched_supernet(run)
    cands = [(c.op_idx, c.input_idx) for c in sample_pool(sup, 3, 0, set())]
    return sup, scoring_context(sup), cands


def test_proxies_on_a_dcss_candidate_are_finite_and_deterministic(loaded):
    sup, ctx, cands = loaded
    rng_before = torch.random.get_rng_state()
    for name in ("synflow", "naswot", "grad_norm", "snip", "jacov", "params", "flops"):
        first = get_scorer(name).score(ctx, cands)
        assert len(first) == 3 and all(math.isfinite(v) for v in first), (name, first)
        assert get_scorer(name).score(ctx, cands) == first, name  # same seed, same batch, same numbers
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the global RNG is left alone
    # params is the stand-alone network's parameter count, exactly
    from archgraph.core.compile import compile_graph
    from archgraph.core.costs import count_params

    assert get_scorer("params").score(ctx, cands[:1])[0] == count_params(compile_graph(candidate_graph(ctx.graph, cands[0])))
    assert len(set(get_scorer("params").score(ctx, cands))) > 1  # different architectures, different sizes


def test_supernet_scorer_is_score_subnet_on_the_selection_split(loaded):
    from archgraph.engine.smiou import score_subnet

    sup, ctx, cands = loaded
    got = get_scorer("supernet").score(ctx, cands)
    want = [score_subnet(sup.net, sup.strategy.relaxation, o, i, sup.data, sup.cfg, sup.device) for o, i in cands]
    # the cached, batched path scores what score_subnet scores, one candidate at a time: equal up to the
    # rounding of batched convolutions (an argmax flipped at a near-tie moves mIoU by a pixel's share)
    assert got == pytest.approx(want, abs=5e-3) and all(0 <= v <= 1 for v in got)
    without = ScoringContext(None, None, sup.data, sup.cfg, sup.device, ctx.graph)
    with pytest.raises(ConfigError, match="finished search"):
        get_scorer("supernet").score(without, cands)
    assert get_scorer("params").score(without, cands) == get_scorer("params").score(ctx, cands)  # proxies need no supernet


def test_train_scorer_uses_the_trainer_it_is_given(loaded):
    from archgraph.engine.scoring import TrainScorer

    sup, ctx, cands = loaded
    seen = []
    scorer = TrainScorer(trainer=lambda graph, cfg: seen.append(graph) or {"miou": 0.25 * len(seen)})
    assert scorer.score(ctx, cands[:2]) == [0.25, 0.5] and len(seen) == 2


def test_score_command_writes_named_results_and_never_overwrites(run, capsys):
    args = ["score", str(run), "--archs", "2", "--scorers", "supernet,params,synflow"]
    assert main(args) == 0
    files = sorted((run / "scored").glob("*.json"))
    assert [f.name for f in files] == ["random2-seed0__supernet+params+synflow.json"]
    record = json.loads(files[0].read_text())
    assert [s["name"] for s in record["scorers"]] == ["supernet", "params", "synflow"]
    assert len(record["archs"]) == 2 and all(set(a["scores"]) == {"supernet", "params", "synflow"} for a in record["archs"])
    assert all((run / "scored" / a["file"]).is_file() for a in record["archs"])
    assert "| supernet | params | synflow |" in files[0].with_suffix(".md").read_text()
    assert main(args) == 2 and "--force" in capsys.readouterr().err  # the same settings: kept
    assert main(args + ["--force"]) == 0
    assert json.loads(files[0].read_text())["archs"] == record["archs"]  # deterministic
    # the search's own architecture, from its file
    assert main(["score", str(run), "--archs", str(run / "arch.yaml"), "--scorers", "params"]) == 0
    got = json.loads(next((run / "scored").glob("files-*__params.json")).read_text())
    assert got["archs"][0]["source"] == "file" and got["archs"][0]["arch_hash"] == json.loads((run / "final.json").read_text())["arch_hash"]
    assert main(["score", str(run), "--scorers", "nope"]) == 2 and "unknown scorer" in capsys.readouterr().err
    assert main(["score", str(run / "missing")]) == 2 and "not a search run folder" in capsys.readouterr().err
