"""P-DARTS mechanics: stages deepen a fresh supernet, the weakest ops are dropped, new layers inherit
their nearest node's set, dropout hits parameter-free ops only, the cap holds, resume rebuilds the
stage graph, and an end-to-end CLI run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from archgraph import build_space, compile_graph, load_graph
from archgraph.core.choices import ArchParams, ChoicePoints, OpChoice
from archgraph.cli import main
from archgraph.config import SearchConfig
from archgraph.errors import ConfigError, RegistryError
from archgraph.core.graph import graphs_equal
from archgraph.strategies.p_darts import PDARTS, FreeOpDropoutMix, PDARTSParams, PDARTSRelaxation
from helpers import assert_architecture_trains

SIX_OPS = ["skip_connect", "max_pool_3x3", "mbconv_k3_r3", "mbconv_k5_r3", "mbconv_k3_r6", "mbconv_k5_r6"]


def free_space(layers=3):
    return build_space("dcss", {"layers": layers, "base_channels": 4, "num_classes": 3, "ops": SIX_OPS})


def layers_of(g):
    return max(d["layer"] for _, d in g.nodes(data=True) if d["kind"] == "fusion")


def op_of(g, n):
    ops = g.nodes[n]["ops"]
    return ops[0] if ops else None


def randomise_alpha(net, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in net.arch.alpha.values():
            a.copy_(3 * torch.randn(a.shape, generator=gen))


def test_stages_deepen_a_fresh_supernet_and_drop_the_weakest_ops():
    space = free_space(layers=3)
    strategy = PDARTS(space, PDARTSParams(), SearchConfig(), seed=0)
    assert strategy.num_stages() == 3 and strategy.depths == [1, 2, 3]
    previous = None
    sizes, depths = [], []
    for stage in range(3):
        strategy.begin_stage(stage, previous)
        net = strategy.build_supernet()
        depths.append(layers_of(strategy.graph))
        sizes.append({len(c.candidates) for c in net.choices.ops})
        # a fresh supernet: the architecture parameters are back at their 1e-3 * N(0, 1) initialisation
        assert max(float(a.detach().abs().max()) for a in net.arch.alpha.values()) < 0.01
        if previous is not None:
            probs = {c.node: torch.softmax(previous.arch.alpha[c.label], -1).tolist() for c in previous.choices.ops}
            for c in net.choices.ops:
                source = c.node if c.node in probs else f"L{depths[-2]}_s{space.nodes[c.node]['scale']}"  # a new layer: nearest = deepest old one
                old = previous.choices.op_choice(source).candidates
                p = probs[source]
                two_weakest = {old[i] for i in sorted(range(len(old)), key=lambda i: p[i])[:2]}
                assert list(c.candidates) == [o for o in old if o not in two_weakest], c.node
            old_w = previous.nodes["L1_s8"].branches["stem_s4"][0][0].weight  # fresh weights, not carried over
            assert not torch.equal(net.nodes["L1_s8"].branches["stem_s4"][0][0].weight, old_w)
        randomise_alpha(net, seed=stage)
        previous = net
    assert depths == [1, 2, 3]
    assert sizes == [{6}, {4}, {2}]  # 6 -> 4 -> 2, the decoder's argmax makes the final 1
    assert set(strategy.candidates) == {f"L{l}_s{s}" for l in (1, 2, 3) for s in (4, 8, 16, 32)}


def test_shrink_keeps_a_parametric_candidate_while_the_cap_is_on():
    from archgraph.strategies.p_darts import shrink

    space = free_space(layers=1)
    strategy = PDARTS(space, PDARTSParams(), SearchConfig(), seed=0)
    strategy.begin_stage(0, None)
    net = strategy.build_supernet()
    with torch.no_grad():  # skip and pool strongest, then mbconv_k5_r6
        for a in net.arch.alpha.values():
            a.copy_(torch.tensor([3.0, 2.0, 0.0, 0.1, 0.2, 1.0]))
    plain = shrink(net, strategy.candidates, drop=4)
    guarded = shrink(net, strategy.candidates, drop=4, keep_parametric=strategy.free_ops)
    assert plain["L1_s8"] == ["skip_connect", "max_pool_3x3"]
    assert guarded["L1_s8"] == ["skip_connect", "mbconv_k5_r6"]  # still exactly 4 dropped
    assert shrink(net, strategy.candidates, drop=3)["L1_s8"] == ["skip_connect", "max_pool_3x3", "mbconv_k5_r6"]


def test_resume_rebuilds_the_stage_graph_from_the_saved_candidate_sets():
    space = free_space(layers=3)
    strategy = PDARTS(space, PDARTSParams(), SearchConfig(), seed=0)
    strategy.begin_stage(0, None)
    net = strategy.build_supernet()
    randomise_alpha(net, seed=5)
    strategy.begin_stage(1, net)
    saved = strategy.state_dict()

    resumed = PDARTS(space, PDARTSParams(), SearchConfig(), seed=0)
    resumed.load_state_dict(saved)
    resumed.begin_stage(1, None)  # what the search loop does on --resume: no previous supernet
    assert graphs_equal(resumed.graph, strategy.graph)
    assert resumed.candidates == strategy.candidates
    assert any(len(v) == 4 for v in resumed.candidates.values())


def test_dropout_hits_parameter_free_ops_only_and_only_in_training():
    ones = nn.Module()
    ones.forward = lambda x: torch.ones_like(x)  # a parametric stand-in: must never be dropped
    choice = OpChoice("n", "n", ("skip_connect", "mbconv_k3_r3"))
    arch = ArchParams(ChoicePoints((choice,), ()))
    with torch.no_grad():
        arch.alpha["n"].zero_()  # weights 0.5 / 0.5
    relax = PDARTSRelaxation(frozenset({"skip_connect"}))
    mixer = relax.op_mixer(choice, arch, 8)
    assert isinstance(mixer, FreeOpDropoutMix) and mixer.regularised == (True, False)
    relax.dropout = 0.5
    torch.manual_seed(0)
    x = torch.full((4, 8, 16, 16), 2.0)
    y = mixer.train()(x, [nn.Identity(), ones])
    values, counts = torch.unique(y, return_counts=True)
    # skip output dropped -> 0.5 * 0 + 0.5 * 1; kept -> 0.5 * 2 / (1 - 0.5) + 0.5 * 1
    assert values.tolist() == [0.5, 2.5]
    assert abs(counts[0].item() / y.numel() - 0.5) < 0.03
    assert torch.all(mixer.eval()(x, [nn.Identity(), ones]) == 1.5)  # no dropout in evaluation
    with relax.fixed_subnet({"n": 0}, {}):
        assert torch.equal(mixer.train()(x, [nn.Identity(), ones]), x)  # subnet mode: the derived net, no dropout


def test_dropout_schedule_matches_the_official_code():
    strategy = PDARTS(free_space(), PDARTSParams(), SearchConfig(), seed=0)
    strategy.begin_stage(2, None)  # stage 3: rate 0.7
    rates = []
    for epoch in range(25):
        strategy.on_epoch_start(epoch, 25)
        rates.append(strategy.relaxation.dropout)
    assert strategy.warmup_epochs() == 10  # 10 of 25 weight-only epochs
    for e in range(10):
        assert rates[e] == pytest.approx(0.7 * (25 - e - 1) / 25)
    for e in range(10, 25):
        assert rates[e] == pytest.approx(0.7 * math.exp(-0.2 * (e - 10)))
    strategy.begin_stage(0, None)
    strategy.on_epoch_start(0, 25)
    assert strategy.relaxation.dropout == 0.0  # stage 1: rate 0


def test_cap_keeps_at_most_two_parameter_free_ops():
    space = free_space(layers=2)
    strategy = PDARTS(space, PDARTSParams(stages=1, drop=[], dropout=[0.0]), SearchConfig(), seed=0)
    strategy.begin_stage(0, None)
    net = strategy.build_supernet()
    with torch.no_grad():  # every node prefers skip_connect, each with a different confidence; then mbconv_k5_r6
        for i, c in enumerate(net.choices.ops):
            net.arch.alpha[c.label].copy_(torch.tensor([2.0 + 0.1 * i, 0.0, 0.0, 0.0, 0.0, 1.0]))
    strategy.params.max_free = -1
    uncapped = strategy.derive(net)
    free_uncapped = [n for n in uncapped if op_of(uncapped, n) == "skip_connect"]
    assert len(free_uncapped) > 2 and strategy.free_kept == len(free_uncapped)

    strategy.params.max_free = 2
    arch = strategy.derive(net)
    kept = [n for n in arch if op_of(arch, n) in ("skip_connect", "max_pool_3x3")]
    assert len(kept) == 2 and strategy.free_kept == 2
    probs = {c.node: torch.softmax(net.arch.alpha[c.label], -1)[0].item() for c in net.choices.ops}
    assert min(probs[n] for n in kept) > max(probs[n] for n in strategy.free_replaced)  # the weakest went first
    for n in strategy.free_replaced:
        if n in arch:
            assert arch.nodes[n]["ops"] == ["mbconv_k5_r6"]  # fell back to its next best op
    compile_graph(arch)


def test_dcss_default_ops_have_no_parameter_free_candidates(tiny_space):
    strategy = PDARTS(tiny_space, PDARTSParams(), SearchConfig(), seed=0)
    strategy.begin_stage(0, None)
    net = strategy.build_supernet()
    assert all(not any(m.op_mixer.regularised) for n, m in net.nodes.items() if isinstance(m.op_mixer, FreeOpDropoutMix))
    strategy.derive(net)
    assert strategy.free_kept == 0 and strategy.free_replaced == []


def test_architecture_gradients_are_clipped(tiny_space):
    strategy = PDARTS(tiny_space, PDARTSParams(), SearchConfig(grad_clip=1e-3), seed=0)
    strategy.begin_stage(0, None)
    net = strategy.build_supernet()
    opt = strategy.arch_optimizer(net)
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["betas"], opt.param_groups[0]["weight_decay"]) == (1e-2, (0.5, 0.999), 0.0)
    for p in net.arch_parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    norm = torch.cat([p.grad.flatten() for p in net.arch_parameters()]).norm()
    assert norm == pytest.approx(1e-3, rel=1e-3)


def test_shared_warm_up_it_does_not_read_warns(tiny_space):
    with pytest.warns(UserWarning, match=r"p_darts does not read search.warmup_epochs \(set to 0\); it uses strategy.warmup_fraction=0.4 of every stage's search.epochs \(2 weight-only epochs of 6\)"):
        PDARTS(tiny_space, PDARTSParams(), SearchConfig(epochs=6, warmup_epochs=0), seed=0)


def test_bad_options_are_rejected(tiny_space):
    with pytest.raises(ConfigError, match="strategy.drop"):
        PDARTS(tiny_space, PDARTSParams(drop=[2]), SearchConfig())
    with pytest.raises(ConfigError, match="strategy.dropout"):
        PDARTS(tiny_space, PDARTSParams(dropout=[0.0, 0.4, 1.5]), SearchConfig())
    with pytest.raises(ConfigError, match="strategy.stage_layers"):
        PDARTS(tiny_space, PDARTSParams(stage_layers=[1, 2]), SearchConfig())
    with pytest.raises(RegistryError, match="skip_connect"):
        PDARTS(tiny_space, PDARTSParams(free_ops=["skip_conect"]), SearchConfig())
    flat = tiny_space.copy()
    flat.graph["params"] = {k: v for k, v in flat.graph["params"].items() if k != "layers"}
    assert PDARTS(flat, PDARTSParams(), SearchConfig()).depths == [None, None, None]  # depth kept
    with pytest.raises(ConfigError, match="no integer 'layers'"):
        PDARTS(flat, PDARTSParams(stage_layers=[1, 1, 2]), SearchConfig())


TINY = [
    "strategy.name=p_darts",
    "space.layers=3",
    "space.base_channels=4",
    f"space.ops=[{','.join(SIX_OPS)}]",
    "data.num_samples=16",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "search.epochs=2",
    "search.steps_per_epoch=1",
    "search.bn_recalib_batches=1",
    "data.val_limit=2",
    "search.eval_every=2",
]


def search(out, resume=False):
    return main(["search", "--out", str(out), "--no-progress", "--set", *TINY, *(["--resume"] if resume else [])])


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("p_darts") / "full"
    assert search(out) == 0
    return out


def test_search_end_to_end_through_the_cli(full_run):
    out = full_run
    records = [json.loads(line) for line in (out / "search.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in records] == [(s, e) for s in range(3) for e in range(2)]
    assert [r["stage_layers"] for r in records] == [1, 1, 2, 2, 3, 3]
    assert [r["candidates_max"] for r in records] == [6, 6, 4, 4, 2, 2]
    assert [r["arch_active"] for r in records] == [False, True] * 3  # warm-up round(0.4 * 2) = 1 per stage
    assert records[-1]["free_ops_kept"] <= 2
    assert records[3]["free_dropout"] == pytest.approx(0.4)  # stage 2, first architecture epoch: exp(0) * 0.4

    supernet = load_graph(out / "supernet.yaml")  # the last stage's graph: full depth, two ops per choice
    assert layers_of(supernet) == 3
    assert {len(d["ops"]) for _, d in supernet.nodes(data=True) if d["kind"] == "fusion"} == {2}

    arch = load_graph(out / "arch.yaml")
    assert sum(op_of(arch, n) in ("skip_connect", "max_pool_3x3") for n in arch) <= 2
    assert_architecture_trains(arch, classes=5)


def test_killed_in_stage_two_resumes_with_the_saved_candidate_sets(full_run, tmp_path, monkeypatch):
    """Killed after the first epoch of stage 2: --resume rebuilds that stage's shrunk, deeper graph
    from the checkpoint (no previous supernet exists then) and ends with the uninterrupted result."""
    import archgraph.engine.search as engine
    from archgraph.engine.checkpoint import save_checkpoint

    def die_after_checkpoint(path, obj):
        save_checkpoint(path, obj)
        if (obj.get("stage"), obj.get("epoch"), obj.get("finished_epoch")) == (1, 0, True):
            raise KeyboardInterrupt

    out = tmp_path / "killed"
    monkeypatch.setattr(engine, "save_checkpoint", die_after_checkpoint)
    assert search(out) == 130
    monkeypatch.undo()
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert (state["stage"], state["strategy"]["stage"]) == (1, 1)
    assert {len(v) for v in state["strategy"]["candidates"].values()} == {4}
    assert search(out, resume=True) == 0
    assert graphs_equal(load_graph(out / "supernet.yaml"), load_graph(full_run / "supernet.yaml"))
    assert graphs_equal(load_graph(out / "arch.yaml"), load_graph(full_run / "arch.yaml"))
    final = torch.load(full_run / "checkpoint.pt", weights_only=False)["net"]
    resumed = torch.load(out / "checkpoint.pt", weights_only=False)["net"]
    for k, v in final.items():
        if k.startswith("arch."):
            assert torch.equal(resumed[k], v), k


def test_p_darts_shrinks_the_op_sets_inside_auto_deeplab_cells(tmp_path):
    """Choices inside cell bodies shrink too; cells share alpha, so every cell keeps the same sets."""
    from archgraph.cli import main

    out = tmp_path / "adl"
    assert (
        main(
            [
                "search",
                "--out",
                str(out),
                "--no-progress",
                "--set",
                "space.name=autodeeplab",
                "space.layers=3",
                "space.base_channels=4",
                "space.blocks=2",
                "strategy.name=p_darts",
                "data.num_samples=16",
                "data.crop=[32,32]",
                "data.batch_size=2",
                "search.epochs=2",
                "search.steps_per_epoch=1",
                "search.bn_recalib_batches=1",
                "data.val_limit=2",
                "search.eval_every=2",
            ]
        )
        == 0
    )
    records = [json.loads(l) for l in (out / "search.jsonl").read_text().splitlines()]
    assert [r["candidates_max"] for r in records] == [8, 8, 6, 6, 4, 4]
    supernet = load_graph(out / "supernet.yaml")
    bodies = [d["body"] for _, d in supernet.nodes(data=True) if d.get("body") is not None]
    assert len(bodies) > 2
    sets = [{n: tuple(b.nodes[n]["ops"]) for n in b.nodes if len(b.nodes[n]["ops"]) > 1} for b in bodies]
    assert sets[0] and all(len(ops) == 4 for ops in sets[0].values())
    assert all(s == sets[0] for s in sets)
