"""The BFS decoder on hand-built graphs with known scores."""

from __future__ import annotations

import pytest

from archgraph import compile_graph, decode
from archgraph.errors import GraphError
from archgraph.core.graph import NodeSpec, add_edge, add_node, graphs_equal, inputs_of, new_graph, node_spec, validate

OPS = ("mbconv_k3_r3", "mbconv_k5_r6", "mbconv_k7_r3")


def hand_built():
    """image -> s (1/4) ; a, b, c (layer 1, all take s) ; d takes {a, b, c} keep 1 ; e takes {s, a, d} keep 2 ; head <- e."""
    g = new_graph("hand", num_classes=2)
    add_node(g, "image", NodeSpec("input", 0, 1, 3))
    add_node(g, "s", NodeSpec("stem", 0, 4, 4, ("conv3x3",)))
    add_edge(g, "image", "s")
    for n in ("a", "b", "c"):
        add_node(g, n, NodeSpec("fusion", 1, 4, 4, OPS))
        add_edge(g, "s", n)
    add_node(g, "d", NodeSpec("fusion", 2, 8, 8, OPS, keep_inputs=1))
    for n in ("a", "b", "c"):
        add_edge(g, n, "d", kind="candidate")
    add_node(g, "e", NodeSpec("fusion", 3, 4, 4, OPS, keep_inputs=2))
    for n in ("s", "a", "d"):
        add_edge(g, n, "e", kind="candidate")
    add_node(g, "head", NodeSpec("head", 4, 1, 2, ("head_simple",)))
    add_edge(g, "e", "head")
    validate(g)
    return g


def test_decoder_picks_argmax_ops_top_k_inputs_and_prunes():
    g = hand_built()
    op_scores = {"a": [0.1, 0.7, 0.2], "b": [0.5, 0.2, 0.3], "c": [0.2, 0.2, 0.6], "d": [0.3, 0.3, 0.4], "e": [0.9, 0.05, 0.05]}
    input_scores = {"d": [0.2, 0.1, 0.7], "e": [0.5, 0.1, 0.4]}  # d keeps c; e keeps s and d
    arch = decode(g, op_scores, input_scores)
    assert set(arch.nodes) == {"image", "s", "c", "d", "e", "head"}  # a and b no longer reach the head
    assert inputs_of(arch, "d") == ["c"]
    assert set(inputs_of(arch, "e")) == {"s", "d"}
    assert node_spec(arch, "c").ops == ("mbconv_k7_r3",)
    assert node_spec(arch, "d").ops == ("mbconv_k7_r3",)
    assert node_spec(arch, "e").ops == ("mbconv_k3_r3",)
    assert all(not node_spec(arch, n).has_input_choice for n in arch.nodes)
    assert arch.edges["c", "d"]["score"] == pytest.approx(0.7)
    assert arch.edges["c", "d"]["kind"] == "fixed"
    validate(arch)
    compile_graph(arch)


def test_decoder_keep_override_and_ties_are_deterministic():
    g = hand_built()
    ops = {n: [1 / 3] * 3 for n in "abcde"}
    inputs = {"d": [1 / 3] * 3, "e": [1 / 3] * 3}
    arch = decode(g, ops, inputs)
    assert inputs_of(arch, "e") == ["s", "a"]  # ties go to the earlier edges ...
    assert "d" not in arch and "b" not in arch  # ... so d (and b, c behind it) no longer reach the head
    assert node_spec(arch, "a").ops == (OPS[0],)
    wide = decode(g, ops, inputs, keep=3)
    assert set(inputs_of(wide, "e")) == {"s", "a", "d"}
    assert graphs_equal(arch, decode(g, ops, inputs))


def test_decoder_rejects_scores_of_another_graph():
    g = hand_built()
    with pytest.raises(GraphError, match="no op scores"):
        decode(g, {}, {})
    ops = {n: [1 / 3] * 3 for n in "abcde"}
    with pytest.raises(GraphError, match="2 entries"):
        decode(g, ops, {"d": [0.5, 0.5], "e": [1 / 3] * 3})


def test_sampled_architectures_are_uniform_over_ops():
    from collections import Counter

    from archgraph import sample_architecture

    g = hand_built()
    counts = Counter(node_spec(sample_architecture(g, seed), "e").ops[0] for seed in range(300))
    assert set(counts) == set(OPS)
    assert min(counts.values()) > 60  # ~100 each


# ------------------------------------------------------------------------------------------------
# Architectures by name


def test_an_architecture_by_name_is_the_one_the_equivalent_scores_decode_to():
    from archgraph.core.decode import derive_by_name
    from archgraph.core.graph import graph_hash

    g = hand_built()
    by_name = derive_by_name(
        g, ops={"c": "mbconv_k7_r3", "d": "mbconv_k7_r3", "e": "mbconv_k3_r3", "a": "mbconv_k5_r6"}, inputs={"d": ["c"], "e": ["s", "d"]}
    )  # a is left out of the architecture: its entry has no effect
    op_scores = {"a": [0.1, 0.7, 0.2], "b": [0.5, 0.2, 0.3], "c": [0.2, 0.2, 0.6], "d": [0.3, 0.3, 0.4], "e": [0.9, 0.05, 0.05]}
    decoded = decode(g, op_scores, {"d": [0.2, 0.1, 0.7], "e": [0.5, 0.1, 0.4]})
    assert graph_hash(by_name) == graph_hash(decoded)
    assert set(by_name.nodes) == {"image", "s", "c", "d", "e", "head"} and inputs_of(by_name, "d") == ["c"]
    assert node_spec(derive_by_name(g, ops={"e": "mbconv_k5_r6"}, inputs={"d": ["a"], "e": ["s", "d"]}, default_op="mbconv_k7_r3"), "a").ops == ("mbconv_k7_r3",)


def test_subnet_mode_by_name_computes_the_architecture_by_name():
    import torch

    from archgraph import transfer_weights
    from archgraph.core.choices import discover_choices
    from archgraph.core.decode import decisions, derive_by_name, scores_by_name

    g = hand_built()
    ops, inputs = {"b": "mbconv_k5_r6", "d": "mbconv_k3_r3", "e": "mbconv_k7_r3"}, {"d": ["b"], "e": ["a", "d"]}
    torch.manual_seed(0)
    supernet = compile_graph(g).eval()
    fixed = compile_graph(derive_by_name(g, ops, inputs, default_op="mbconv_k3_r3")).eval()
    transfer_weights(supernet, fixed)
    op_idx, in_idx = decisions(discover_choices(g), *scores_by_name(g, ops, inputs, default_op="mbconv_k3_r3"))
    assert in_idx == {"d": [1], "e": [1, 2]} and op_idx["e"] == 2
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), supernet.relaxation.fixed_subnet(op_idx, in_idx):
        assert torch.allclose(supernet(x), fixed(x), atol=1e-5)


@pytest.mark.parametrize(
    "ops, inputs, message",
    [
        ({"z": "mbconv_k3_r3"}, {}, r"ops: space 'hand' has no node 'z'"),
        ({"s": "conv3x3"}, {}, r"ops: node 's' has no op choice \(its op is fixed\); nodes with one: a, b, c, d, e"),
        ({"e": "mbconv_k5_r7"}, {}, r"node 'e' has no candidate op 'mbconv_k5_r7'; did you mean 'mbconv_k5_r6'\? \(its candidates: mbconv_k3_r3, mbconv_k5_r6, mbconv_k7_r3\)"),
        ({}, {"a": ["s"]}, r"inputs: node 'a' has no input choice \(its inputs are fixed\); nodes with one: d, e"),
        ({}, {"e": ["s", "dd"]}, r"'dd' is not a candidate input of node 'e'; did you mean 'd'\? \(its candidates: s, a, d\)"),
        ({}, {"e": ["s"]}, r"node 'e' keeps 2 of its inputs \(keep_inputs\), got 1: \['s'\]"),
        ({}, {"e": ["s", "s"]}, r"node 'e' lists a source twice"),
        ({"e": "mbconv_k3_r3"}, {"d": ["c"], "e": ["s", "d"]}, r"ops: nodes 'c', 'd' are part of the architecture but no op is given; candidates of 'c'"),
        ({"c": OPS[0], "d": OPS[0], "e": OPS[0]}, {"d": ["c"]}, r"inputs: node 'e' is part of the architecture but no inputs are given; 'e' keeps 2 of: s, a, d"),
    ],
)
def test_architectures_by_name_name_what_is_wrong(ops, inputs, message):
    from archgraph.core.decode import derive_by_name

    with pytest.raises(GraphError, match=message):
        derive_by_name(hand_built(), ops, inputs)


def test_nodes_sharing_a_label_take_one_decision_by_name():
    from archgraph.core.decode import derive_by_name

    g = hand_built()
    for n in ("a", "b"):
        g.nodes[n]["label"] = "twin"
    arch = derive_by_name(g, ops={"a": OPS[1], "d": OPS[0], "e": OPS[0]}, inputs={"d": ["b"], "e": ["a", "d"]})
    assert node_spec(arch, "a").ops == node_spec(arch, "b").ops == (OPS[1],)  # b follows its twin
    with pytest.raises(GraphError, match="nodes 'a' and 'b' share the op choice label 'twin'"):
        derive_by_name(g, ops={"a": OPS[1], "b": OPS[2], "d": OPS[0], "e": OPS[0]}, inputs={"d": ["b"], "e": ["a", "d"]})
    with pytest.raises(GraphError, match=r"default_op 'conv3x3' is a candidate of no op choice"):
        derive_by_name(g, default_op="conv3x3")
