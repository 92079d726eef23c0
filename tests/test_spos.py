"""SPOS mechanics: uniform single paths, BN recalibration, the evolution, the CLI end to end."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from scipy import stats

from archgraph import compile_graph, load_graph
from archgraph.cli import main
from archgraph.config import SearchConfig, load_config
from archgraph.core.costs import count_params, model_flops
from archgraph.core.decode import decode
from archgraph.strategies.evolution import ArchCost, EvolutionConfig, Gene, evolve
from archgraph.strategies.spos import SPOS, SPOSParams
from helpers import TINY_ONE_EPOCH_SEARCH, assert_architecture_trains


def spos(space, **params):
    strategy = SPOS(space, SPOSParams(**params), SearchConfig(), seed=0)
    return strategy, strategy.build_supernet()


def test_paths_are_uniform(tiny_space):
    strategy, net = spos(tiny_space)
    relax = strategy.relaxation
    op_label = net.choices.ops[0].label  # 6 ops
    in_choice = next(c for c in net.choices.inputs if len(c.candidates) == 8)  # 8 inputs, keep 2: 28 pairs
    draws = 2800
    ops, pairs = [0] * 6, {p: 0 for p in itertools.combinations(range(8), 2)}
    for _ in range(draws):
        relax.resample()
        o, i = relax.current
        ops[o[op_label]] += 1
        pairs[tuple(i[in_choice.label])] += 1
    assert stats.chisquare(ops).pvalue > 1e-3
    assert stats.chisquare(list(pairs.values())).pvalue > 1e-3
    assert min(pairs.values()) > 0


def test_one_path_per_forward(tiny_space):
    strategy, net = spos(tiny_space)
    net.prune_dead = False  # every node's mixer (dead ones too: tests/test_live_subgraph.py covers pruning)
    calls: dict[tuple[str, str], int] = {}
    for node, module in net.nodes.items():
        for name, m in itertools.chain(module.ops.items(), module.branches.items()):
            m.register_forward_hook(lambda *_, key=(node, name): calls.__setitem__(key, calls.get(key, 0) + 1))
    net.train()
    net(torch.randn(2, 3, 32, 32))
    ops, inputs = strategy.relaxation.current
    for c in net.choices.ops:
        ran = [o for o in c.candidates if calls.get((c.node, o))]
        assert ran == [c.candidates[ops[c.label]]]
    for c in net.choices.inputs:
        ran = [s for s in c.candidates if calls.get((c.node, s))]
        assert ran == [c.candidates[i] for i in inputs[c.label]]
    first = strategy.relaxation.current
    net(torch.randn(2, 3, 32, 32))
    assert strategy.relaxation.current != first  # a new path every forward pass
    assert strategy.arch_optimizer(net) is None


def test_cost_table_matches_the_derived_network(tiny_space):
    strategy, net = spos(tiny_space)
    cost = ArchCost(tiny_space, (32, 32))
    for _ in range(3):
        strategy.relaxation.resample()
        ops, inputs = strategy.relaxation.current
        arch = decode(
            tiny_space,
            {c.label: [float(i == ops[c.label]) for i in range(6)] for c in net.choices.ops},
            {c.label: [float(i in inputs[c.label]) for i in range(len(c.candidates))] for c in net.choices.inputs},
        )
        derived = compile_graph(arch)
        assert cost.of(ops, inputs) == (model_flops(derived, (32, 32)), count_params(derived))


def test_flops_band_sampling(tiny_space):
    strategy, net = spos(tiny_space)
    cost = ArchCost(tiny_space, (32, 32))
    flops = sorted(cost.of(*strategy.relaxation.uniform())[0] for _ in range(200))
    lo, hi = flops[60], flops[140]
    strategy, net = spos(tiny_space, band_min=lo, band_max=hi, band_bins=4)
    strategy.prepare_costs((32, 32))
    for _ in range(30):
        strategy.relaxation.resample()
        assert lo <= cost.of(*strategy.relaxation.current)[0] <= hi


def test_bn_recalibration_changes_running_stats_only(tiny_space, monkeypatch):
    import archgraph.engine.evaluate
    from archgraph.engine.search import build_search_data, score_subnet

    cfg = load_config(None, ["data.num_samples=8", "data.crop=[32,32]", "data.batch_size=2", "data.val_limit=2", "space.num_classes=3"])
    data = build_search_data(cfg)
    strategy, net = spos(tiny_space)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    seen = {}

    def spy(model, *args, **kwargs):
        seen.update({k: v.clone() for k, v in model.state_dict().items()})
        return real(model, *args, **kwargs)

    real = archgraph.engine.evaluate.evaluate
    monkeypatch.setattr(archgraph.engine.evaluate, "evaluate", spy)
    ops = {c.label: 0 for c in net.choices.ops}
    inputs = {c.label: [0, 1] for c in net.choices.inputs}
    miou = score_subnet(net, strategy.relaxation, ops, inputs, data, cfg, torch.device("cpu"), recalib_batches=2)
    assert 0 <= miou <= 1
    stat_keys = [k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    changed = [k for k in stat_keys if not torch.equal(seen[k], before[k])]
    assert len(changed) > 10  # the recalibrated statistics the candidate was evaluated with
    first_op = net.choices.ops[0]
    assert any(f"nodes.{first_op.node}.ops.{first_op.candidates[0]}" in k for k in changed)
    assert not any(f"nodes.{first_op.node}.ops.{first_op.candidates[1]}." in k for k in changed)  # not on the path
    for k in before:
        if k not in stat_keys:
            assert torch.equal(seen[k], before[k]), f"recalibration changed {k}"  # weights and arch untouched
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), f"the supernet's own state must be restored: {k}"


def toy_genes():
    return [Gene(4) for _ in range(8)] + [Gene(5, 2)]


def toy_fitness(cand):
    return float(sum(cand[:8]) + sum(cand[8]))  # max 8*3 + 4+3 = 31


def toy_legal(cand):
    return sum(cand[:8]) <= 18


def test_evolution_improves_and_respects_the_constraint():
    cfg = EvolutionConfig(population=20, generations=8, select=5, mutation=10, crossover=10, mutation_prob=0.1)
    checked = []

    def legal(c):
        checked.append(c)
        return toy_legal(c)

    result = evolve(toy_genes(), toy_fitness, legal, cfg, seed=3)
    first = result.history[0]["best_fitness"]
    bests = [h["best_fitness"] for h in result.history]
    assert bests == sorted(bests)  # the top-k never loses its best
    assert result.fitness > first + 2, bests
    assert result.fitness <= 18 + 7
    assert all(toy_legal(c) for c in result.scored), "an illegal candidate was scored"
    assert len(result.scored) == len(set(result.scored))
    assert toy_legal(result.best) and result.fitness == toy_fitness(result.best)
    assert len(result.history) == cfg.generations + 1


def test_evolution_is_reproducible():
    cfg = EvolutionConfig(population=10, generations=3, select=3, mutation=5, crossover=5)
    a = evolve(toy_genes(), toy_fitness, toy_legal, cfg, seed=7)
    b = evolve(toy_genes(), toy_fitness, toy_legal, cfg, seed=7)
    c = evolve(toy_genes(), toy_fitness, toy_legal, cfg, seed=8)
    assert a.history == b.history and a.best == b.best
    assert list(a.scored) != list(c.scored)


def _fingerprint(result) -> str:
    """Every scored candidate in order, the history and the best: equal iff the run is the same."""
    import hashlib

    plain = lambda c: [list(v) if isinstance(v, tuple) else v for v in c]
    text = json.dumps([[plain(c), f] for c, f in result.scored.items()]) + json.dumps(result.history) + repr(result.best)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    "seed, cfg, scored, fingerprint",
    [
        (3, EvolutionConfig(population=20, generations=8, select=5, mutation=10, crossover=10, mutation_prob=0.1), 180, "b1944b8e8d864e33"),
        (0, EvolutionConfig(population=6, generations=4, select=2, mutation=8, crossover=3, mutation_prob=0.5), 45, "d5d9e9918e58c11c"),
    ],
)
def test_evolution_repeats_the_recorded_runs(seed, cfg, scored, fingerprint):
    """Fingerprints recorded before ``evolve`` was split into phases: the same seed still gives the
    same candidates in the same order, the same history and the same best."""
    result = evolve(toy_genes(), toy_fitness, toy_legal, cfg, seed=seed)
    assert len(result.scored) == scored <= cfg.max_scored()
    assert _fingerprint(result) == fingerprint
    small = evolve([Gene(2), Gene(3, 2)], lambda c: float(c[0] + sum(c[1])), lambda c: True, EvolutionConfig(population=4, generations=3, select=2, mutation=2, crossover=2), seed=1)
    assert len(small.scored) == 6 and _fingerprint(small) == "630fc182276dd3c2"  # the space ran out: 2 x 3 candidates


def test_evolution_bound_on_scored_candidates():
    cfg = EvolutionConfig(population=20, generations=8, select=5, mutation=10, crossover=10)
    assert cfg.max_scored() == 20 + 8 * 20
    assert EvolutionConfig(population=6, generations=4, mutation=8, crossover=3).max_scored() == 6 + 4 * 11
    assert len(evolve(toy_genes(), toy_fitness, toy_legal, cfg, seed=0).scored) == cfg.max_scored()


def _evolve_with_a_fake_scorer(space, tmp_path, progress, **params):
    evo = dict(population=4, generations=2, select=2, mutation=2, crossover=2)
    strategy, net = spos(space, **{**evo, **params})
    strategy.progress = progress
    asked = []

    def score(ops, inputs, recalib_batches=None):
        asked.append(recalib_batches)
        return sum(ops.values()) / 100 + sum(sum(v) for v in inputs.values()) / 1000

    assert strategy.on_search_end(net, score, tmp_path)
    return strategy, asked


def test_evolution_progress_bar_follows_the_switch(tiny_space, tmp_path, capsys):
    from archgraph.strategies.spos import show_progress

    assert show_progress(True) and not show_progress(False)
    assert not show_progress(None)  # pytest captures stderr: not a terminal, so no bar by default
    _, asked = _evolve_with_a_fake_scorer(tiny_space, tmp_path, progress=False)
    assert capsys.readouterr().err == ""
    _evolve_with_a_fake_scorer(tiny_space, tmp_path, progress=True)
    err = capsys.readouterr().err
    n = len(asked)
    assert "evolution" in err and f"{n}/{n}" in err and "generation 2/2" in err and "best 0." in err
    history = [json.loads(l) for l in (tmp_path / "evolution.jsonl").read_text().splitlines()]
    assert history[-1]["scored"] == n and f"best {history[-1]['best_fitness']:.4f}" in err


def test_every_candidate_is_recalibrated_on_the_default_batches(tiny_space, tmp_path):
    _, asked = _evolve_with_a_fake_scorer(tiny_space, tmp_path, progress=False)
    assert asked and set(asked) == {SPOSParams().recalib_batches} and SPOSParams().recalib_batches >= 16
    _, asked = _evolve_with_a_fake_scorer(tiny_space, tmp_path, progress=False, recalib_batches=0)
    assert set(asked) == {None}  # 0: the loop's scorer uses search.bn_recalib_batches


def test_bad_options_are_rejected(tiny_space):
    from archgraph.errors import ConfigError

    with pytest.raises(ConfigError, match="mutation_prob"):
        SPOS(tiny_space, SPOSParams(mutation_prob=2), SearchConfig())
    with pytest.raises(ConfigError, match="band_max"):
        SPOS(tiny_space, SPOSParams(band_min=5, band_max=1), SearchConfig())


TINY = TINY_ONE_EPOCH_SEARCH


def test_cli_search_end_to_end(tmp_path):
    out = tmp_path / "run"
    evo = [
        "strategy.name=spos",
        "strategy.population=4",
        "strategy.generations=2",
        "strategy.select=2",
        "strategy.mutation=2",
        "strategy.crossover=2",
        "strategy.flops_limit=800000",
        "strategy.recalib_batches=2",
    ]  # the default 32 would add ~5 s; the fake-scorer tests cover it
    assert main(["search", "--out", str(out), "--no-progress", "--set", *TINY, *evo]) == 0
    history = [json.loads(l) for l in (out / "evolution.jsonl").read_text().splitlines()]
    assert [h["generation"] for h in history] == [0, 1, 2]
    assert all(e["flops"] <= 800000 for h in history for e in h["population"])
    best = history[-1]["top"][0]
    arch = load_graph(out / "arch.yaml")
    supernet = load_graph(out / "supernet.yaml")
    kept = [node for node in best["ops"] if node in arch]
    assert kept
    for node in kept:
        assert arch.nodes[node]["ops"] == [supernet.nodes[node]["ops"][best["ops"][node]]]
    assert_architecture_trains(arch, classes=5)
