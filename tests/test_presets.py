"""DCSS presets (FCN, hourglass, DeepLabv3, HRNet): architectures *of* DCSS with the topology their name promises."""

from __future__ import annotations

import pytest
import torch

from archgraph import build_space, compile_graph
from archgraph.core.archfile import check_in_space, load_architecture
from archgraph.cli import main
from archgraph.errors import ConfigError
from archgraph.core.graph import graph_hash, has_choices, head_node, inputs_of, node_spec, save
from archgraph.spaces.dcss import SCALES
from archgraph.core import spaces_api
from archgraph.core.spaces_api import build_preset
from archgraph.spaces.dcss_presets import PRESETS

LAYERS = (2, 3, 4, 6, 14)


def preset_architecture(name, params, op=None):
    """A DCSS preset built from ``space`` config keys, through the registry as every caller does."""
    return spaces_api.preset_architecture(name, "dcss", params, op)


def fusion(arch):
    return [n for n in arch.nodes if node_spec(arch, n).kind == "fusion"]


def layer_of(arch, n):
    return node_spec(arch, n).layer


def scale_of(arch, n):
    return node_spec(arch, n).scale


def main_chain(arch, end, pick=lambda preds: preds[0]):
    """Follow ``pick`` of each node's inputs from ``end`` back to the stem: the design's main path."""
    chain = [end]
    while node_spec(arch, chain[-1]).kind == "fusion":
        chain.append(pick(inputs_of(arch, chain[-1])))
    return list(reversed(chain))


@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("name", [n for n in PRESETS])
def test_preset_is_an_architecture_of_dcss(name, layers, tmp_path):
    if name == "hourglass" and layers < 2:
        pytest.skip("hourglass needs two layers")
    space = build_space("dcss", {"layers": layers, "base_channels": 4, "num_classes": 3})
    arch = build_preset(name, space)
    assert not has_choices(arch)
    check_in_space(arch)  # node ids, kinds, layers, scales, channels, ops and edges all from the space
    for n in fusion(arch):
        assert set(node_spec(arch, n).ops) == {"mbconv_k3_r6"}
        for p in inputs_of(arch, n):
            assert space.has_edge(p, n)
    # the head reads the last layer's four scales, as in every DCSS architecture
    assert sorted(scale_of(arch, p) for p in inputs_of(arch, head_node(arch))) == list(SCALES)
    # round trip through the architecture loader that `archgraph train` uses
    save(arch, tmp_path / "arch.yaml")
    assert graph_hash(load_architecture(tmp_path / "arch.yaml")) == graph_hash(arch)
    if layers <= 4:
        net = compile_graph(arch).eval()
        with torch.no_grad():
            assert net(torch.randn(2, 3, 32, 48)).shape == (2, 3, 32, 48)


@pytest.mark.parametrize("layers", LAYERS)
def test_fcn_is_a_single_path_down_then_the_head(layers):
    arch = preset_architecture("fcn", {"layers": layers})
    assert all(len(inputs_of(arch, n)) == 1 for n in fusion(arch))
    path = main_chain(arch, f"L{layers}_s32")  # from the stem's 1/4 node on
    scales = [scale_of(arch, n) for n in path]
    assert scales == sorted(scales) and scales[0] == 4 and scales[-1] == 32  # only ever goes down
    assert [layer_of(arch, n) for n in path] == list(range(0, layers + 1))  # one node per layer
    # every fusion node not on the path is a last-layer node fed by a skip of its own scale
    for n in set(fusion(arch)) - set(path):
        assert layer_of(arch, n) == layers
        (src,) = inputs_of(arch, n)
        assert scale_of(arch, src) == scale_of(arch, n) and (src in path or node_spec(arch, src).kind == "stem")


@pytest.mark.parametrize("layers", LAYERS)
def test_hrnet_keeps_four_scales_with_cross_scale_fusion_at_every_layer(layers):
    arch = preset_architecture("hrnet", {"layers": layers})
    for layer in range(1, layers + 1):
        nodes = [n for n in fusion(arch) if layer_of(arch, n) == layer]
        assert sorted(scale_of(arch, n) for n in nodes) == list(SCALES)
        for n in nodes:
            preds = inputs_of(arch, n)
            assert {layer_of(arch, p) for p in preds} == {layer - 1}
            assert sorted(scale_of(arch, p) for p in preds) == list(SCALES)  # fuses every scale
    assert len(fusion(arch)) == 4 * layers


@pytest.mark.parametrize("layers", LAYERS)
def test_hourglass_goes_down_then_up_with_skips(layers):
    arch = preset_architecture("hourglass", {"layers": layers})
    prev_layer = lambda preds: max(preds, key=lambda p: layer_of(arch, p))
    path = main_chain(arch, f"L{layers}_s4", prev_layer)
    scales = [scale_of(arch, n) for n in path]
    assert scales[0] == 4 and scales[-1] == 4 and max(scales) == 32
    stacks = max(1, layers // 6) if layers >= 12 else 1
    # down then up, once per stacked hourglass: the scale changes read (+...+ -...-) x stacks
    signs = "".join("+" if b > a else "-" for a, b in zip(scales, scales[1:]) if a != b)
    runs = [r for r in signs.replace("+-", "+|-").replace("-+", "-|+").split("|")]
    assert len(runs) == 2 * stacks and all(r[0] == ("+" if i % 2 == 0 else "-") for i, r in enumerate(runs))
    assert [scales[i] for i in range(1, len(scales)) if scales[i - 1] == 32 and scales[i] < 32] and scales.count(32) >= stacks
    # every node on the way up that has a same-scale node on the way down takes it as a skip
    ups = [n for i, n in enumerate(path) if i > 0 and scales[i] < scales[i - 1]]
    assert ups and all(len(inputs_of(arch, n)) == 2 for n in ups if scale_of(arch, n) in (4, 8))
    for n in ups:
        for p in inputs_of(arch, n):
            assert p == path[path.index(n) - 1] or scale_of(arch, p) == scale_of(arch, n)


@pytest.mark.parametrize("layers", LAYERS)
def test_deeplabv3_goes_down_to_one_sixteenth_then_stays(layers):
    arch = preset_architecture("deeplabv3", {"layers": layers})
    path = main_chain(arch, f"L{layers}_s16")
    scales = [scale_of(arch, n) for n in path]
    assert scales == sorted(scales) and max(scales) == 16
    assert scales[-2:] == [16, 16] or layers == 1  # reaches 1/16 and stays there
    # nothing at 1/32 but the last-layer node the head needs, and the head only sees 1/16 features
    last = [n for n in fusion(arch) if layer_of(arch, n) == layers and n != path[-1]]
    assert all(inputs_of(arch, n) == [path[-2]] for n in last)
    assert [n for n in fusion(arch) if scale_of(arch, n) == 32] == [f"L{layers}_s32"]
    assert set(fusion(arch)) == set(path[1:]) | set(last)


def test_presets_differ_and_errors_name_the_fix():
    space = build_space("dcss", {"layers": 6})
    assert len({graph_hash(build_preset(n, space)) for n in PRESETS}) == len(PRESETS)
    with pytest.raises(ConfigError, match="did you mean 'hrnet'"):
        build_preset("hrnt", space)
    with pytest.raises(ConfigError, match="connectivity=dense"):
        build_preset("fcn", build_space("dcss", {"layers": 6, "connectivity": "previous"}))
    build_preset("hrnet", build_space("dcss", {"layers": 6, "connectivity": "previous"}))  # previous-layer only: fine
    with pytest.raises(ConfigError, match="not a candidate"):
        build_preset("hrnet", space, op="mbconv_k9_r1")
    with pytest.raises(ConfigError, match="layers >= 2"):
        preset_architecture("hourglass", {"layers": 1})
    custom = preset_architecture("fcn", {"layers": 2, "ops": ["mbconv_k5_r3", "mbconv_k7_r6"]})
    assert {node_spec(custom, n).ops[0] for n in fusion(custom)} == {"mbconv_k5_r3"}


def test_cli_renders_and_trains_a_preset(tmp_path):
    assert main(["render", "--preset", "hrnet", "--set", "space.layers=3", "-o", str(tmp_path / "hrnet.dot")]) == 0
    dot = (tmp_path / "hrnet.dot").read_text()
    assert "L3_s32" in dot and "L3_s4" in dot
    tiny = ["space.layers=2", "space.base_channels=4", "data.crop=[32,32]", "data.batch_size=2", "data.num_samples=4", "data.val_limit=2", "train.epochs=1", "train.steps_per_epoch=1"]
    assert main(["train", "--preset", "fcn", "--no-progress", "--out", str(tmp_path / "run"), "--set", *tiny]) == 0
    arch = load_architecture(tmp_path / "run" / "arch.yaml")
    assert arch.graph["preset"] == "fcn" and node_spec(arch, "head").channels == 5  # sized for the dataset
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert main(["render", "--preset", "nope", "-o", str(tmp_path / "x.svg")]) == 2
