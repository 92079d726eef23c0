"""Fixed and chosen inputs on one node, concat fusion, up-sampling modes, and the U-Net-like space
(spaces/unet.py) searched, derived, drawn and trained by every built-in strategy."""

from __future__ import annotations

import json

import pytest
import torch

from archgraph import build_space, compile_graph, decode
from archgraph.cli import main
from archgraph.core.choices import ArchParams, discover_choices
from archgraph.core.compile import transfer_weights
from archgraph.core.decode import decisions, derive_by_name, sample_architecture, uniform_scores
from archgraph.core.graph import (
    NodeSpec,
    add_edge,
    add_node,
    dump,
    from_yaml,
    graph_hash,
    graphs_equal,
    inputs_of,
    new_graph,
    node_spec,
    to_yaml,
    validate,
)
from archgraph.core.ops import UPSAMPLERS, build_alignment, check_known_ops, register_upsample
from archgraph.core.registry import get_preset
from archgraph.errors import ConfigError, GraphError
from archgraph.outputs import render as render_module
from archgraph.outputs.render import graphviz_available, picture, scale_colour, to_dot
from helpers import assert_architecture_trains

C = 4
OPS2 = ("conv3x3", "mbconv_k3_r3")


def validate_with_registry(g) -> None:
    """What the compiler checks: the schema, then the registered ops and up-sampling modes."""
    validate(g)
    check_known_ops(g)


def mixed_graph(fusion: str = "concat", keep: int = 1, upsample: str = "bilinear"):
    """image -> s (1/4) -> a (1/4) -> b (1/8) -> c (1/16); d (1/8) <- c fixed + keep k of {a, b};
    e (1/4) <- d fixed + keep k of {a, b, c}; head <- e."""
    g = new_graph("mixed", num_classes=2)
    add_node(g, "image", NodeSpec("input", 0, 1, 3))
    add_node(g, "s", NodeSpec("stem", 0, 4, C, ("conv3x3",)))
    add_edge(g, "image", "s")
    for i, (n, scale, src) in enumerate((("a", 4, "s"), ("b", 8, "a"), ("c", 16, "b")), start=1):
        add_node(g, n, NodeSpec("fusion", i, scale, C * scale // 4, OPS2))
        add_edge(g, src, n)
    for i, (n, scale, up, cands) in enumerate((("d", 8, "c", "ab"), ("e", 4, "d", "abc")), start=4):
        add_node(g, n, NodeSpec("fusion", i, scale, C * scale // 4, OPS2, keep_inputs=keep, fusion=fusion, upsample=upsample))
        for p in cands[:1]:
            add_edge(g, p, n, kind="candidate")
        add_edge(g, up, n)  # the fixed up-path between two candidates: slots follow predecessor order
        for p in cands[1:]:
            add_edge(g, p, n, kind="candidate")
    add_node(g, "head", NodeSpec("head", 6, 1, 2, ("head_simple",)))
    add_edge(g, "e", "head")
    return g


# ------------------------------------------------------------------------------------------------
# The graph: validation, choices, decoding, files


def test_a_node_may_have_fixed_inputs_and_an_input_choice():
    g = mixed_graph()
    validate_with_registry(g)
    assert dump(g).splitlines()[5] == "d = fusion[L4 1/8 C8] {conv3x3,mbconv_k3_r3} <- c + keep 1 of a, b (concat)"
    choices = discover_choices(g)
    assert [(c.node, c.candidates, c.keep) for c in choices.inputs] == [("d", ("a", "b"), 1), ("e", ("a", "b", "c"), 1)]
    arch = ArchParams(choices)
    assert {k: v.numel() for k, v in arch.beta.items()} == {"d": 2, "e": 3}  # one beta entry per candidate edge


@pytest.mark.parametrize(
    "breaks, match",
    [
        (lambda g: g.nodes["d"].update(keep_inputs=3), r"keep_inputs=3 but the node has 2 candidate inputs \(and 1 fixed\)"),
        (lambda g: [g.edges[p, "d"].update(kind="fixed") for p in "ab"], "no candidate inputs"),
        (lambda g: g.nodes["d"].pop("keep_inputs"), "kind 'candidate' but the node has no input choice"),
        (lambda g: g.edges["c", "d"].update(kind="chosen"), "kind 'chosen'.*with an input choice"),
        (lambda g: g.nodes["d"].update(fusion="concatenate"), "unknown fusion 'concatenate'; did you mean 'concat'"),
        (lambda g: g.nodes["head"].update(fusion="concat"), "fusion='concat' on a 'head' node"),
        (lambda g: g.nodes["d"].update(upsample="bilnear"), "unknown upsample mode 'bilnear'; did you mean 'bilinear'"),
        (lambda g: g.nodes["d"].update(upsample=3), "'upsample' must be a string"),
    ],
)
def test_bad_mixed_nodes_are_refused_naming_the_fix(breaks, match):
    g = mixed_graph()
    breaks(g)
    with pytest.raises(GraphError, match=match):
        validate_with_registry(g)


def test_decoder_keeps_fixed_inputs_and_the_top_k_candidates_as_chosen_edges():
    g = mixed_graph(keep=2)
    ops = {n: [0.4, 0.6] for n in "abcde"}
    arch = decode(g, ops, {"d": [0.3, 0.7], "e": [0.5, 0.1, 0.4]})
    assert inputs_of(arch, "d") == ["a", "c", "b"]  # the supernet's predecessor order
    assert [arch.edges[p, "d"]["kind"] for p in inputs_of(arch, "d")] == ["chosen", "fixed", "chosen"]
    assert inputs_of(arch, "e") == ["a", "d", "c"] and arch.edges["d", "e"]["kind"] == "fixed"
    assert arch.edges["c", "e"]["score"] == pytest.approx(0.4) and "score" not in arch.edges["d", "e"]
    assert node_spec(arch, "e").fusion == "concat" and not node_spec(arch, "e").has_input_choice
    assert dump(arch).splitlines()[-2] == "e = fusion[L5 1/4 C4] mbconv_k3_r3 <- d + chosen a, c (concat)"
    # k = 1 and the fixed input alone reaches the rest: the BFS still follows it
    arch1 = decode(g, ops, {"d": [0.9, 0.1], "e": [0.1, 0.1, 0.8]}, keep=1)
    assert set(arch1.nodes) == set(g.nodes) and inputs_of(arch1, "d") == ["a", "c"] and inputs_of(arch1, "e") == ["d", "c"]
    back = from_yaml(to_yaml(arch))  # the YAML round trip keeps fusion, upsample and the chosen kind
    assert graphs_equal(arch, back) and back.edges["a", "d"]["kind"] == "chosen"
    validate_with_registry(back)


def test_new_attributes_round_trip_and_count_in_the_hash():
    g = mixed_graph(upsample="transposed")
    back = from_yaml(to_yaml(g))
    assert graphs_equal(g, back) and node_spec(back, "d").upsample == "transposed"
    assert graph_hash(g) != graph_hash(mixed_graph()) != graph_hash(mixed_graph(fusion="sum"))
    text = to_yaml(build_space("dcss", {"layers": 1, "base_channels": 2}))
    assert "fusion: sum" not in text and "upsample" not in text  # defaults stay out of files


# ------------------------------------------------------------------------------------------------
# The compiled node: slots, concat fusion, subnet mode == the derived network


def test_concat_fusion_has_one_shape_in_supernet_and_derived_network():
    g = mixed_graph(keep=2)
    net = compile_graph(g)
    d, e = net.nodes["d"], net.nodes["e"]
    assert d.fuse[0].in_channels == 2 * 8 and e.fuse[0].in_channels == 2 * 4  # one slot per fixed input + one for the pooled
    assert len(e.choice_branches) == 3 and len(e.branch_list) == 4
    arch = sample_architecture(g, seed=1)
    derived = compile_graph(arch)
    assert derived.nodes["e"].fuse[0].weight.shape == e.fuse[0].weight.shape
    assert transfer_weights(net, derived) == len(derived.state_dict())  # every tensor found by name and shape
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 2, 32, 32)


@pytest.mark.parametrize("fusion", ["concat", "sum"])
def test_subnet_mode_computes_the_derived_network(fusion):
    g = mixed_graph(fusion, keep=2, upsample="transposed")
    net = compile_graph(g)
    choices = discover_choices(g)
    x = torch.randn(2, 3, 32, 32)
    for seed in (0, 1):
        ops, ins = uniform_scores(choices, seed)
        derived = compile_graph(decode(g, ops, ins))
        transfer_weights(net, derived)
        with torch.no_grad(), net.relaxation.fixed_subnet(*decisions(choices, ops, ins)):
            for mode in (False, True):  # eval (running statistics) and training (batch statistics)
                net.train(mode), derived.train(mode)
                assert torch.allclose(net(x), derived(x), atol=1e-5)


def test_the_mixer_receives_only_the_candidates():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, inputs, branches):
            seen.append((len(inputs), len(branches)))
            return branches[0](inputs[0])

    from archgraph.core.relaxation import ContinuousRelaxation

    class SpyRelaxation(ContinuousRelaxation):
        def input_mixer(self, choice, arch):
            return Spy()

    compile_graph(mixed_graph(), SpyRelaxation())(torch.randn(1, 3, 32, 32))
    assert seen == [(2, 2), (3, 3)]


# ------------------------------------------------------------------------------------------------
# Up-sampling modes


@pytest.mark.parametrize("mode", ["bilinear", "nearest", "transposed", "pixel_shuffle"])
def test_upsampling_modes_align_shapes(mode):
    branch = build_alignment(NodeSpec("fusion", 1, 16, 8, ("conv3x3",)), NodeSpec("fusion", 2, 4, 3, ("conv3x3",), upsample=mode))
    assert branch(torch.randn(2, 8, 5, 6)).shape == (2, 3, 20, 24)
    learned = any(isinstance(m, (torch.nn.ConvTranspose2d, torch.nn.PixelShuffle)) for m in branch.modules())
    assert learned == (mode in ("transposed", "pixel_shuffle"))


def test_a_plug_in_registers_its_own_upsampling_mode():
    @register_upsample("test_repeat", doc="1x1 conv, repeat_interleave")
    def _repeat(cin, cout, factor):
        class Repeat(torch.nn.Module):
            def forward(self, x):
                return x.repeat_interleave(factor, 2).repeat_interleave(factor, 3)

        return torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1), Repeat())

    try:
        g = mixed_graph(upsample="test_repeat")
        validate_with_registry(g)
        assert compile_graph(g)(torch.randn(1, 3, 32, 32)).shape == (1, 2, 32, 32)
    finally:
        UPSAMPLERS.pop("test_repeat")
    with pytest.raises(ConfigError, match="did you mean 'transposed'"):
        build_space("unet", {"upsample": "transpose"})


# ------------------------------------------------------------------------------------------------
# The unet space


def test_unet_space_graph_and_plain_unet_preset():
    g = build_space("unet", {"base_channels": 4, "keep_skips": 2})
    assert [(c.node, c.candidates, c.keep) for c in discover_choices(g).inputs] == [("dec_s8", ("enc_s4", "enc_s8"), 2), ("dec_s4", ("enc_s4", "enc_s8", "enc_s16"), 2)]
    assert inputs_of(g, "dec_s8")[0] == "enc_s16" and g.edges["enc_s16", "dec_s8"]["kind"] == "fixed"
    assert all(node_spec(g, n).fusion == "concat" for n in ("dec_s8", "dec_s4"))
    with pytest.raises(ConfigError, match="keep_skips=3 but a decoder node has only 2 candidate skips"):
        build_space("unet", {"keep_skips": 3})
    plain = get_preset("unet", "unet").build(g)
    assert {p for p in inputs_of(plain, "dec_s4")} == {"dec_s8", "enc_s4"} and {p for p in inputs_of(plain, "dec_s8")} == {"enc_s16", "enc_s8"}
    assert node_spec(plain, "enc_s8").ops == ("conv3x3",)
    named = derive_by_name(g, inputs={"dec_s8": ["enc_s4", "enc_s8"], "dec_s4": ["enc_s4", "enc_s16"]}, default_op="conv3x3")
    assert inputs_of(named, "dec_s4") == ["dec_s8", "enc_s4", "enc_s16"]


def test_renderer_tells_fixed_from_chosen_inputs_and_shows_the_fusion(tmp_path):
    g = build_space("unet", {"base_channels": 4, "upsample": "transposed"})
    source = to_dot(g)
    assert 'dec_s8 [label="dec_s8\\n1/8 · 8ch\\nconcat · up transposed' in source
    edge = {line.split(" [")[0].strip().replace('"', "").replace(render_module.FAINT, ""): line for line in source.splitlines() if " -> " in line}
    assert 'color="#404040" penwidth=1.8' in edge["enc_s16 -> dec_s8"] and "class=fixed" in edge["enc_s16 -> dec_s8"]
    assert "style=dashed" in edge["enc_s4 -> dec_s8"] and "class=faint" in edge["enc_s4 -> dec_s8"]
    assert "style=dashed" not in edge["enc_s4 -> enc_s8"]
    arch = sample_architecture(g, 0)
    derived = to_dot(arch)
    assert "dashed: a chosen input" in derived and "stem, darker" in derived


def test_every_scale_has_its_own_colour_in_the_picture_and_the_legend():
    assert scale_colour(2) != scale_colour(4) and len({scale_colour(2**i) for i in range(10)}) == 10
    assert scale_colour(256) == scale_colour(256)  # the computed ones are deterministic
    g = build_space("unet", {"base_channels": 4, "levels": 2})
    source = to_dot(g)
    stem2, stem4 = (f'fillcolor="{c}"' for c in (render_module._shade(scale_colour(s), render_module.STEM_SHADE) for s in (2, 4)))
    assert stem2 != stem4 and stem2 in source.split("stem_s2 [")[1].split("\n")[0] and stem4 in source.split("stem_s4 [")[1].split("\n")[0]
    g.nodes["enc_s8"]["scale"] = 2  # any scale is coloured (and named in the legend), not grey
    assert f'fillcolor="{scale_colour(2)}"' in to_dot(g).split("enc_s8 [")[1].split("\n")[0] and "scale 1/2" in to_dot(g)


@pytest.mark.skipif(not graphviz_available(), reason="the geometry exists only in a drawn SVG (Graphviz)")
def test_unet_pictures_route_every_edge_around_foreign_nodes():
    from test_render_geometry import check_clean, parse, softmax_scores

    g = build_space("unet", {"base_channels": 4, "keep_skips": 2})
    for graph, scores in ((g, softmax_scores(g)), (g, None), (sample_architecture(g, 2), None)):
        drawing = parse(picture(graph, "svg", scores=scores, title="unet"))
        assert len(drawing.edges) == graph.number_of_edges()
        assert check_clean(drawing) > 2.0


UNET_SEARCH = [
    "space.name=unet",
    "space.levels=2",
    "space.base_channels=4",
    "data.num_samples=4",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "data.val_limit=2",
    "search.epochs=1",
    "search.warmup_epochs=0",
    "search.steps_per_epoch=1",
    "search.bn_recalib_batches=1",
]
STRATEGY_SETS = {
    "proxylessnas": ["strategy.arch_every=1"],
    "p_darts": ["strategy.stages=1", "strategy.drop=[]", "strategy.dropout=[0.0]"],
    "spos": ["strategy.population=2", "strategy.generations=1", "strategy.select=1", "strategy.mutation=1", "strategy.crossover=0", "strategy.recalib_batches=1"],
}


# each strategy once; half of them on a PATH without Graphviz (the pictures fall back to DOT files)
@pytest.mark.parametrize("strategy, graphviz_on_path", [("darts", True), ("dcnas", False), ("pc_darts", True), ("p_darts", False), ("proxylessnas", True), ("spos", False)])
def test_every_strategy_searches_derives_renders_and_trains_unet(strategy, graphviz_on_path, tmp_path, request):
    if not graphviz_on_path:
        request.getfixturevalue("no_graphviz")
    out = tmp_path / "run"
    argv = ["search", "--out", str(out), "--no-progress", "--set", *UNET_SEARCH, f"strategy.name={strategy}", *STRATEGY_SETS.get(strategy, [])]
    assert main(argv) == 0
    arch = from_yaml((out / "arch.yaml").read_text())
    assert node_spec(arch, "dec_s4").fusion == "concat" and arch.edges["enc_s8", "dec_s4"]["kind"] == "fixed"
    assert [arch.edges[p, "dec_s4"]["kind"] for p in inputs_of(arch, "dec_s4")].count("chosen") == 1
    assert json.loads((out / "scores.json").read_text())["inputs"].keys() == {"dec_s4"}
    drawn = "svg" if graphviz_available() else "dot"
    assert (out / f"supernet.{drawn}").is_file() and (out / f"arch.{drawn}").is_file()
    assert (
        main(
            [
                "train",
                str(out),
                "--out",
                str(tmp_path / "train"),
                "--no-progress",
                "--set",
                "data.crop=[32,32]",
                "data.batch_size=2",
                "data.num_samples=4",
                "data.val_limit=2",
                "train.epochs=1",
                "train.steps_per_epoch=1",
            ]
        )
        == 0
    )
    assert (tmp_path / "train" / "best.pt").is_file() or (tmp_path / "train" / "last.pt").is_file()


def test_a_derived_unet_trains_alone():
    assert_architecture_trains(sample_architecture(build_space("unet", {"base_channels": 4, "num_classes": 5}), 4), steps=6)
