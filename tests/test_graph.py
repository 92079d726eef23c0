"""The graph schema: validation errors name what is wrong; YAML round-trips exactly."""

from __future__ import annotations

import pytest

from archgraph import build_space, sample_architecture
from archgraph.errors import GraphError
from archgraph.core.graph import (
    NodeSpec,
    add_edge,
    add_node,
    dump,
    from_yaml,
    graph_hash,
    graphs_equal,
    load,
    new_graph,
    save,
    to_yaml,
    validate,
)


def small_graph():
    g = new_graph("toy", num_classes=2)
    add_node(g, "x", NodeSpec("input", 0, 1, 3))
    add_node(g, "a", NodeSpec("stem", 0, 4, 8, ("conv3x3",)))
    add_node(g, "b", NodeSpec("fusion", 1, 8, 16, ("mbconv_k3_r3", "mbconv_k5_r6"), keep_inputs=1))
    add_node(g, "h", NodeSpec("head", 2, 1, 2, ("head_simple",)))
    add_edge(g, "x", "a")
    add_edge(g, "a", "b", kind="candidate")
    add_edge(g, "b", "h")
    return g


def test_valid_graph_passes():
    validate(small_graph())


def test_cycle_is_rejected():
    g = small_graph()
    g.add_edge("b", "a", kind="fixed")
    with pytest.raises(GraphError, match="cycle"):
        validate(g)


def test_dangling_node_is_named():
    g = small_graph()
    add_node(g, "lost", NodeSpec("fusion", 1, 4, 8, ("conv3x3",)))
    add_edge(g, "a", "lost")
    with pytest.raises(GraphError, match="lost"):
        validate(g)


def test_unreachable_node_is_named():
    g = small_graph()
    add_node(g, "orphan", NodeSpec("fusion", 1, 4, 8, ("conv3x3",)))
    add_edge(g, "orphan", "h")
    with pytest.raises(GraphError, match="orphan"):
        validate(g)


def test_candidate_edges_must_match_input_choice():
    g = small_graph()
    g.edges["a", "b"]["kind"] = "fixed"
    with pytest.raises(GraphError, match="candidate"):
        validate(g)


def test_bad_scale_and_keep_inputs():
    g = small_graph()
    g.nodes["b"]["scale"] = 6
    with pytest.raises(GraphError, match="power of two"):
        validate(g)
    g = small_graph()
    g.nodes["b"]["keep_inputs"] = 3
    with pytest.raises(GraphError, match="keep_inputs=3"):
        validate(g)


def test_unknown_ops_and_modes_are_the_registry_check_s_not_the_schema_s():
    """validate() knows no registry (core/graph.py imports nothing from ops); check_known_ops, which
    the compiler and the loaders call after it, names the node, the op and the closest registered one,
    inside cell bodies too."""
    from archgraph.core.ops import check_known_ops

    g = small_graph()
    g.nodes["b"]["ops"] = ["mbconv_k9_r3"]
    g.nodes["b"].pop("keep_inputs")
    g.edges["a", "b"]["kind"] = "fixed"
    validate(g)
    with pytest.raises(GraphError, match=r"graph 'toy', node 'b': unknown ops \['mbconv_k9_r3'\]; did you mean 'mbconv_k7_r3'\?"):
        check_known_ops(g)
    g = small_graph()
    g.nodes["b"]["upsample"] = "bilnear"
    with pytest.raises(GraphError, match=r"node 'b': unknown upsample mode 'bilnear'; did you mean 'bilinear'\?"):
        check_known_ops(g)
    body, outer = small_graph(), small_graph()
    body.nodes["a"]["ops"] = ["conv3x4"]
    outer.nodes["a"].update(kind="cell", body=body)
    validate(outer)
    with pytest.raises(GraphError, match=r"node 'a': unknown ops \['conv3x4'\]; did you mean 'conv3x3'\?"):
        check_known_ops(outer)


def test_core_has_no_import_circle():
    """Every import inside archgraph/core (module level or in a function) points one way."""
    import ast
    from pathlib import Path

    import networkx as nx

    core = Path(__file__).parent.parent / "archgraph" / "core"
    imports = nx.DiGraph()
    for path in core.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = [node.module] if isinstance(node, ast.ImportFrom) and node.module else [a.name for a in getattr(node, "names", ())] if isinstance(node, ast.Import) else []
            for target in targets:
                if target.startswith("archgraph.core."):
                    imports.add_edge(f"archgraph.core.{path.stem}", target)
    assert "archgraph.core.ops" not in set(imports.successors("archgraph.core.graph"))  # the schema knows no registry
    assert list(nx.simple_cycles(imports)) == []


def test_node_specs_are_parsed_once_and_follow_every_edit():
    """node_spec serves a node's spec from a cache while its attributes are unchanged, and sees any
    edit: a value set, an ops list edited in place, a key removed, a node removed and added again,
    an equal value of another type (still refused); a graph's cache does not keep it alive."""
    import gc
    import weakref

    from archgraph.core.graph import node_spec

    g = small_graph()
    first = node_spec(g, "b")
    assert node_spec(g, "b") is first  # parsed once
    g.nodes["b"]["channels"] = 32
    assert node_spec(g, "b").channels == 32
    g.nodes["b"]["ops"].append("mbconv_k7_r6")  # in place, as a list
    assert node_spec(g, "b").ops == ("mbconv_k3_r3", "mbconv_k5_r6", "mbconv_k7_r6")
    g.nodes["b"]["ops"] = ["mbconv_k3_r3"]  # P-DARTS's rewrite of a stage's ops
    assert node_spec(g, "b").ops == ("mbconv_k3_r3",)
    del g.nodes["b"]["keep_inputs"]
    assert node_spec(g, "b").keep_inputs is None
    g.nodes["b"]["layer"] = 1.0  # equal to 1, but not an integer
    with pytest.raises(GraphError, match="'layer' must be an integer, found 1.0"):
        node_spec(g, "b")
    g.nodes["b"]["layer"] = 1
    copy = g.copy()
    copy.nodes["b"]["scale"] = 16
    assert node_spec(copy, "b").scale == 16 and node_spec(g, "b").scale == 8  # a copy has attribute dicts of its own
    g.remove_node("h")
    add_node(g, "h", NodeSpec("head", 3, 1, 5, ("head_aspp",)))
    assert node_spec(g, "h").channels == 5 and node_spec(g, "h").layer == 3
    gone = weakref.ref(g)
    del g, copy
    gc.collect()
    assert gone() is None


def test_unknown_attribute_is_rejected():
    g = small_graph()
    g.nodes["b"]["colour"] = "red"
    with pytest.raises(GraphError, match="colour"):
        validate(g)


def test_yaml_round_trip_of_supernet_and_derived(tmp_path):
    space = build_space("dcss", {"layers": 3, "base_channels": 4})
    assert graphs_equal(space, from_yaml(to_yaml(space)))
    arch = sample_architecture(space, seed=5)
    save(arch, tmp_path / "arch.yaml")
    back = load(tmp_path / "arch.yaml")
    assert graphs_equal(arch, back)
    assert to_yaml(back) == (tmp_path / "arch.yaml").read_text()
    assert graph_hash(arch) == graph_hash(back)
    assert dump(arch) == dump(back)


def test_nested_body_round_trips():
    body = small_graph()
    g = small_graph()
    g.nodes["a"]["body"] = body
    g.nodes["a"]["kind"] = "cell"
    back = from_yaml(to_yaml(g))
    assert graphs_equal(g, back)
    assert graphs_equal(back.nodes["a"]["body"], body)
    validate(back)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(GraphError, match="no such graph file"):
        load(tmp_path / "missing.yaml")
    (tmp_path / "junk.yaml").write_text("format: something-else\n")
    with pytest.raises(GraphError, match="not an archgraph graph"):
        load(tmp_path / "junk.yaml")
    (tmp_path / "broken.yaml").write_text("nodes: [\n")
    with pytest.raises(GraphError, match="not valid YAML"):
        load(tmp_path / "broken.yaml")


def test_dump_is_one_line_per_node():
    text = dump(small_graph())
    assert text.splitlines() == [
        "x = input[L0 1/1 C3] - <- -",
        "a = stem[L0 1/4 C8] conv3x3 <- x",
        "b = fusion[L1 1/8 C16] {mbconv_k3_r3,mbconv_k5_r6} <- keep 1 of a",
        "h = head[L2 1/1 C2] head_simple <- b",
    ]
