"""Auto-DeepLab's hierarchical space: trellis and nested cells, Viterbi decoding, every strategy on it."""

from __future__ import annotations

import json
import math

import pytest
import torch

from archgraph import build_space, compile_graph, decode, load_graph
from archgraph.core.choices import discover_choices
from archgraph.cli import main
from archgraph.core.graph import node_spec, validate
from archgraph.core.registry import STRATEGIES, load_plugins
from archgraph.spaces.autodeeplab import NONE, cell_rule, node_id, viterbi

TINY = {"layers": 3, "base_channels": 4, "blocks": 2, "num_classes": 3}


@pytest.fixture(scope="module")
def space():
    return build_space("autodeeplab", TINY)


def test_inspect_reports_trellis_and_cell_choice_points(capsys):
    assert main(["inspect", "--space", "autodeeplab", "--set", "space.layers=3", "space.base_channels=4", "space.blocks=2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # cells per layer: 2 (L1), 5 (L2), 8 (L3) = 15; B=2 blocks have 2 + 3 = 5 edges each
    assert summary["op_choices"] == 15 * 5
    assert summary["input_choices"] == 2 + 3 + 4  # one per trellis node H(l, s)
    # one shared alpha (5 edges x 8 ops) + beta: one entry per cell
    assert summary["arch_params"] == 5 * 8 + 15


def test_graph_structure_and_shared_alpha(space):
    validate(space)
    choices = discover_choices(space)
    assert {c.label for c in choices.ops} == {"cell_b0_c0", "cell_b0_c1", "cell_b1_c0", "cell_b1_c1", "cell_b1_b0"}
    assert all(c.candidates[-1] == NONE and len(c.candidates) == 8 for c in choices.ops)
    # H(2, 8) sums the cells from H(1, 4) and H(1, 8); each cell's inputs: H(l-2, s) then H(l-1, s')
    cells = list(space.predecessors("L2_s8"))
    assert cells == ["L2_s8_from_L1_s4", "L2_s8_from_L1_s8"]
    assert list(space.predecessors("L2_s8_from_L1_s8")) == ["stem_s4", "L1_s8"]
    assert list(space.predecessors("L3_s8_from_L2_s16")) == ["L1_s8", "L2_s16"]
    assert node_spec(space, "L3_s32").channels == 2 * 4 * 32 // 4  # B * F * s / 4
    assert node_spec(space, "L3_s32_from_L2_s16").body.nodes["b0_c0"]["channels"] == 4 * 32 // 4
    assert "L1_s16" not in space  # 1/16 is two halvings from the stem: not reachable at layer 1


def test_beta_is_normalised_over_each_sources_outgoing_directions(space):
    net = compile_graph(space)
    with torch.no_grad():
        for p in net.arch.beta.values():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    scores = net.arch.scores()["inputs"]
    index = {(t, c): scores[t][i] for t in scores for i, c in enumerate(space.predecessors(t))}
    for source in ("stem_s4", "L1_s4", "L1_s8", "L2_s8", "L2_s16"):
        out = [p for (t, c), p in index.items() if list(space.predecessors(c))[1] == source]
        assert len(out) >= 2 and math.isclose(sum(out), 1.0, rel_tol=1e-5), source
    # the mixers' softmax over a node's inputs keeps the outgoing-normalised ratios
    label = "L2_s8"
    w = torch.softmax(net.arch.input_logits(label), -1).tolist()
    assert math.isclose(w[0] / w[1], scores[label][0] / scores[label][1], rel_tol=1e-5)


def test_supernet_trains_alpha_and_beta_and_the_derived_net_compiles(space):
    torch.manual_seed(0)
    net = compile_graph(space)
    x = torch.randn(2, 3, 32, 32)
    y = net(x)
    assert y.shape == (2, 3, 32, 32)
    y.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.arch.alpha.values())
    assert any(p.grad.abs().sum() > 0 for p in net.arch.beta.values() if p.grad is not None)
    s = net.arch.scores()
    arch = decode(space, s["ops"], s["inputs"])
    assert not discover_choices(arch).ops and not discover_choices(arch).inputs
    assert compile_graph(arch)(x).shape == (2, 3, 32, 32)


def _transition_scores(space, good: dict[tuple[str, str], float]) -> dict[str, list[float]]:
    """0.1 for every transition except the given (target, source H) ones."""
    out = {}
    for c in discover_choices(space).inputs:
        out[c.label] = [good.get((c.node, list(space.predecessors(cell))[1]), 0.1) for cell in c.candidates]
    return out


def test_viterbi_finds_the_known_best_path_not_the_greedy_one(space):
    # greedy from the stem would take 4 -> 4 (0.6) and then meet only 0.1s; the best product goes via 1/8
    good = {
        (node_id(1, 4), "stem_s4"): 0.6,
        (node_id(1, 8), "stem_s4"): 0.4,
        (node_id(2, 16), "L1_s8"): 0.9,
        (node_id(3, 16), "L2_s16"): 0.9,
    }
    scores = _transition_scores(space, good)
    assert viterbi(space, scores) == [4, 8, 16, 16]
    ops = {c.label: [1.0 / 8] * 8 for c in discover_choices(space).ops}
    arch = decode(space, ops, scores)
    assert arch.graph["path"] == [4, 8, 16, 16]
    assert [n for n in arch.nodes if node_spec(arch, n).kind == "cell"] == ["L1_s8_from_stem_s4", "L2_s16_from_L1_s8", "L3_s16_from_L2_s16"]
    # the derived cell's second input is the path's node two layers back
    assert list(arch.predecessors("L3_s16_from_L2_s16")) == ["L1_s8", "L2_s16"]
    assert list(arch.predecessors("head")) == ["L3_s16"]


def test_hand_set_beta_through_the_parameters_gives_the_path(space):
    net = compile_graph(space)
    with torch.no_grad():
        for p in net.arch.beta.values():
            p.zero_()
        net.arch.beta[node_id(1, 8)][0] = 3.0  # stem -> 1/8 beats stem -> 1/4
        net.arch.beta[node_id(2, 8)][1] = 3.0  # 1/8 -> 1/8
        net.arch.beta[node_id(3, 4)][1] = 3.0  # 1/8 -> 1/4
    s = net.arch.scores()
    assert decode(space, s["ops"], s["inputs"]).graph["path"] == [4, 8, 8, 4]


def test_decoded_cell_never_keeps_none(space):
    choices = discover_choices(space)
    gen = torch.Generator().manual_seed(3)
    ops = {}
    for c in choices.ops:
        values = torch.rand(8, generator=gen).tolist()
        values[-1] = 5.0  # 'none' is the argmax everywhere
        ops[c.label] = values
    inputs = {c.label: [1.0] * len(c.candidates) for c in choices.inputs}
    arch = decode(space, ops, inputs)
    for n in arch.nodes:
        body = node_spec(arch, n).body
        if body is None:
            continue
        used = [o for m in body.nodes for o in body.nodes[m]["ops"]]
        assert NONE not in used
        for block in ("b0", "b1"):
            assert len(list(body.predecessors(block))) == 2  # top-2 per block (b0 has exactly 2)
        validate(body)
    # the kept op is the best non-none one
    _, kept = cell_rule(space, ops)
    e = kept["b1"][0][0]
    label = f"cell_{e}"
    best = max(range(7), key=lambda i: ops[label][i])
    body = node_spec(arch, next(n for n in arch.nodes if node_spec(arch, n).body is not None)).body
    assert body.nodes[e]["ops"] == [space.nodes["L1_s4_from_stem_s4"]["body"].nodes[e]["ops"][best]]


def test_dense_connectivity_ablation_builds_decodes_and_compiles():
    g = build_space("autodeeplab", {**TINY, "layers": 2, "connectivity": "dense"})
    assert len(list(g.predecessors("L2_s32"))) == 1 + 4  # the stem + all four nodes of layer 1
    assert "beta_groups" not in g.graph
    net = compile_graph(g)
    s = net.arch.scores()
    arch = decode(g, s["ops"], s["inputs"])
    assert all(len(list(arch.predecessors(node_id(2, sc)))) <= 2 for sc in (4, 8, 16, 32) if node_id(2, sc) in arch)
    assert compile_graph(arch)(torch.randn(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_render_draws_the_trellis_path_and_the_cell(space, tmp_path):
    from archgraph.outputs.render import render, to_dot

    good = {(node_id(1, 8), "stem_s4"): 0.9, (node_id(2, 8), "L1_s8"): 0.9, (node_id(3, 8), "L2_s8"): 0.9}
    scores = {"ops": {c.label: [1.0 / 8] * 8 for c in discover_choices(space).ops}, "inputs": _transition_scores(space, good)}
    source = to_dot(space, scores)
    dark = [line for line in source.splitlines() if "#1f4e9a" in line and "->" in line]
    assert any("L2_s8_from_L1_s8" in line and "-> L2_s8" in line for line in dark)
    assert not any("L2_s4_from_L1_s4" in line for line in dark)
    result = render(space, tmp_path / "super.dot", scores=scores)
    assert result.extra and result.extra[0].name == "super_cell.dot" and "b1_b0" in result.extra[0].read_text()


SEARCH = [
    "space.name=autodeeplab",
    "space.layers=2",
    "space.base_channels=4",
    "space.blocks=2",
    "data.num_samples=8",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "search.epochs=2",
    "search.warmup_epochs=0",
    "search.steps_per_epoch=2",
    "search.bn_recalib_batches=1",
    "data.val_limit=2",
]
EXTRA = {
    "p_darts": ["strategy.stages=2", "strategy.drop=[2]", "strategy.dropout=[0.0,0.3]"],
    "spos": ["strategy.population=4", "strategy.generations=1", "strategy.select=2", "strategy.mutation=2", "strategy.crossover=2"],
    "proxylessnas": ["strategy.arch_every=2"],  # 4 steps: one architecture step every 2 (the default 5 would take none)
}


@pytest.mark.parametrize("strategy", ["darts", "dcnas", "pc_darts", "proxylessnas", "p_darts", "spos"])
def test_every_strategy_searches_autodeeplab_unchanged(strategy, tmp_path):
    load_plugins()
    if strategy not in STRATEGIES:
        pytest.skip(f"strategy {strategy!r} is not registered yet")
    out = tmp_path / "run"
    assert main(["search", "--out", str(out), "--no-progress", "--set", *SEARCH, f"strategy.name={strategy}", *EXTRA.get(strategy, [])]) == 0
    arch = load_graph(out / "arch.yaml")
    assert len(arch.graph["path"]) == 3 and arch.graph["path"][0] == 4
    for n in arch.nodes:
        body = node_spec(arch, n).body
        if body is not None:
            assert NONE not in [o for m in body.nodes for o in body.nodes[m]["ops"]]
    assert compile_graph(arch).eval()(torch.randn(1, 3, 32, 32)).shape[-2:] == (32, 32)
    # ... and trains stand-alone from the search folder (its file passes the space check)
    train = [
        "train",
        str(out),
        "--out",
        str(tmp_path / "train"),
        "--no-progress",
        "--set",
        "data.num_samples=4",
        "data.crop=[32,32]",
        "data.batch_size=2",
        "train.epochs=1",
        "train.steps_per_epoch=1",
        "data.val_limit=1",
    ]
    assert main(train) == 0


def test_architectures_that_differ_only_in_their_cell_hash_apart():
    """The chosen cell ops live in the cell node's body: the hash (the run cache's key, correlate's
    de-duplication) must see them, or two networks share one T-mIoU."""
    from archgraph.core.costs import count_params
    from archgraph.core.decode import sample_architecture
    from archgraph.core.graph import graph_hash

    space = build_space("autodeeplab", {"layers": 2})
    archs = [sample_architecture(space, seed) for seed in range(8)]
    sizes = {count_params(compile_graph(a)) for a in archs}
    assert len({graph_hash(a) for a in archs}) >= len(sizes) > 1  # distinct networks, distinct hashes
    assert graph_hash(archs[0]) == graph_hash(load_graph_roundtrip(archs[0]))  # the body's hash survives a file


def load_graph_roundtrip(graph):
    from archgraph.core.graph import from_yaml, to_yaml

    return from_yaml(to_yaml(graph))
