"""Property tests: arbitrary YAML and arbitrary graph mutations thrown at the config and architecture
loaders. The only allowed outcomes are a valid object or the user-error type (ArchgraphError)."""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archgraph import build_space, sample_architecture
from archgraph.core.archfile import load_architecture
from archgraph.config import Config, load_config
from archgraph.errors import ArchgraphError
from archgraph.core.graph import to_dict, to_yaml

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
yaml_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)

SECTION_KEYS = {
    "space": ["name", "layers", "base_channels", "connectivity", "keep_inputs", "ops", "head", "num_classes"],
    "strategy": ["name", "paths", "tau_max", "tau_min", "tau_schedule", "channel_ratio"],
    "data": ["name", "root", "crop", "scale", "batch_size", "num_samples", "options"],
    "search": ["epochs", "warmup_epochs", "split_ratio", "arch_betas", "on_nonfinite", "deterministic"],
    "train": ["epochs", "lr", "multi_scale_eval", "flip_eval"],
}
# Configs that look like real ones (known sections and keys, wrong-ish values) reach deeper than noise.
plausible_configs = st.dictionaries(
    st.sampled_from(list(SECTION_KEYS) + ["seed", "device", "bogus"]),
    st.one_of(yaml_values, st.dictionaries(st.sampled_from(sum(SECTION_KEYS.values(), [])), yaml_values, max_size=4)),
    max_size=5,
)


def _load_config_text(tmp_path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    try:
        cfg = load_config(path)
    except ArchgraphError:
        return
    assert isinstance(cfg, Config)
    assert isinstance(cfg.to_yaml(), str)


@SETTINGS
@given(text=st.text(max_size=200))
def test_config_loader_survives_arbitrary_text(tmp_path, text):
    _load_config_text(tmp_path, text)


@SETTINGS
@given(data=plausible_configs)
def test_config_loader_survives_arbitrary_yaml(tmp_path, data):
    _load_config_text(tmp_path, yaml.safe_dump(data))


@SETTINGS
@given(overrides=st.lists(st.text(max_size=30), max_size=4))
def test_set_overrides_survive_arbitrary_strings(overrides):
    try:
        load_config(None, overrides)
    except ArchgraphError:
        pass


BASE = to_dict(sample_architecture(build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 3}), seed=0))
NODE_FIELDS = ["id", "kind", "layer", "scale", "channels", "ops", "keep_inputs", "label", "body", "colour"]


@st.composite
def mutated_architectures(draw):
    """A valid derived architecture with 1-4 random edits: any field, node or edge, any value."""
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        what = draw(st.sampled_from(["node_field", "drop_node", "drop_edge", "add_edge", "edge_attr", "top", "graph_attr"]))
        nodes = data.get("nodes") if isinstance(data.get("nodes"), list) else []
        node_dicts = [n for n in nodes if isinstance(n, dict)]
        edges = data.get("edges") if isinstance(data.get("edges"), list) else None
        edge_lists = [e for e in edges or [] if isinstance(e, list)]
        if what == "node_field" and node_dicts:
            node = draw(st.sampled_from(node_dicts))
            key = draw(st.sampled_from(NODE_FIELDS))
            if draw(st.booleans()):
                node[key] = draw(yaml_values)
            else:
                node.pop(key, None)
        elif what == "drop_node" and nodes:
            nodes.pop(draw(st.integers(0, len(nodes) - 1)))
        elif what == "drop_edge" and edges:
            edges.pop(draw(st.integers(0, len(edges) - 1)))
        elif what == "add_edge" and node_dicts and edges is not None:
            ids = [str(n.get("id")) for n in node_dicts]
            edges.append([draw(st.sampled_from(ids)), draw(st.sampled_from(ids + ["ghost"]))])
        elif what == "edge_attr" and edge_lists:
            edge = draw(st.sampled_from(edge_lists))
            edge[2:] = [draw(st.one_of(yaml_values, st.fixed_dictionaries({"kind": yaml_values}), st.fixed_dictionaries({"score": yaml_values})))]
        elif what == "top":
            data[draw(st.sampled_from(["format", "graph", "nodes", "edges"]))] = draw(yaml_values)
        elif what == "graph_attr" and isinstance(data.get("graph"), dict):
            data["graph"][draw(st.sampled_from(["space", "params", "num_classes", "name"]))] = draw(yaml_values)
    return data


def _load_arch_text(tmp_path, text: str) -> None:
    path = tmp_path / "arch.yaml"
    path.write_text(text)
    try:
        graph = load_architecture(path)
    except ArchgraphError:
        return
    assert to_yaml(graph)  # a graph that loads is a valid, serializable architecture


@SETTINGS
@given(data=mutated_architectures())
def test_architecture_loader_survives_graph_mutations(tmp_path, data):
    _load_arch_text(tmp_path, yaml.safe_dump(data))


@SETTINGS
@given(text=st.text(max_size=300))
def test_architecture_loader_survives_arbitrary_text(tmp_path, text):
    _load_arch_text(tmp_path, text)


def test_the_unmutated_architecture_loads(tmp_path):
    path = tmp_path / "arch.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert load_architecture(path).number_of_nodes() == len(BASE["nodes"])
