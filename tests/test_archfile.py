"""The architecture loader rejects files that are not an architecture of their space, with the reason."""

from __future__ import annotations

import pytest

from archgraph import build_space, sample_architecture
from archgraph.core.archfile import load_architecture
from archgraph.errors import GraphError
from archgraph.core.graph import add_edge, save


@pytest.fixture
def arch():
    return sample_architecture(build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 3}), seed=1)


def _roundtrip(g, tmp_path):
    path = tmp_path / "arch.yaml"
    save(g, path)
    return path


def test_a_sampled_architecture_loads(arch, tmp_path):
    assert load_architecture(_roundtrip(arch, tmp_path)).number_of_nodes() == arch.number_of_nodes()


def test_a_supernet_is_not_an_architecture(tmp_path):
    space = build_space("dcss", {"layers": 2, "base_channels": 4})
    with pytest.raises(GraphError, match="supernet"):
        load_architecture(_roundtrip(space, tmp_path))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda g: g.nodes["L1_s4"].update(ops=["sep_conv_3x3"]), "not a candidate of the space"),
        (lambda g: g.nodes["L2_s8"].update(channels=12), "channels=12"),
        (lambda g: g.graph.update(space="nope"), "not installed"),
        (lambda g: g.graph["params"].update(layers=0), "space parameters are invalid"),
    ],
)
def test_mismatches_with_the_space_are_named(arch, tmp_path, edit, message):
    edit(arch)
    with pytest.raises(GraphError, match=message):
        load_architecture(_roundtrip(arch, tmp_path))


def test_an_edge_the_space_does_not_have(arch, tmp_path):
    # L2_s4 -> L1_s4 would be a cycle; an edge into the stem is not a connection of DCSS.
    add_edge(arch, "L1_s8", "stem_s32")
    with pytest.raises(GraphError, match="not a connection of the space"):
        load_architecture(_roundtrip(arch, tmp_path))
