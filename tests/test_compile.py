"""The compiler: supernet gradients, arbitrary sizes, a static plan, weight transfer by name."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from archgraph import build_space, compile_graph, sample_architecture, transfer_weights
from archgraph.core.relaxation import Relaxation


def test_supernet_backward_reaches_every_alpha_beta_and_weight(tiny_space):
    torch.manual_seed(0)
    net = compile_graph(tiny_space)
    x = torch.randn(2, 3, 64, 64)
    y = net(x)
    assert y.shape == (2, 3, 64, 64)
    torch.nn.functional.cross_entropy(y, torch.randint(0, 3, (2, 64, 64))).backward()
    for name, p in net.arch.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    missing = [n for n, p in net.nodes.named_parameters() if p.grad is None]
    assert not missing
    assert sum(p.numel() for p in net.arch_parameters()) == 8 * 6 + sum(4 * l for l in (1, 2)) * 4


def test_weight_and_arch_parameters_are_disjoint(tiny_space):
    net = compile_graph(tiny_space)
    w = {id(p) for p in net.weight_parameters()}
    a = {id(p) for p in net.arch_parameters()}
    assert w and a and not (w & a)
    assert len(w) + len(a) == len(list(net.parameters()))


@pytest.mark.parametrize("hw", [(64, 64), (45, 70), (33, 97)])
def test_any_input_size_is_padded_and_cropped(tiny_space, hw):
    net = compile_graph(sample_architecture(tiny_space, 1)).eval()
    assert net(torch.randn(1, 3, *hw)).shape == (1, 3, *hw)


def test_forward_does_not_walk_the_graph(tiny_space, monkeypatch):
    net = compile_graph(tiny_space)
    net(torch.randn(2, 3, 64, 64))

    def forbidden(*a, **k):
        raise AssertionError("the graph was walked during forward")

    monkeypatch.setattr(nx.DiGraph, "predecessors", forbidden)
    monkeypatch.setattr(nx.DiGraph, "successors", forbidden)
    monkeypatch.setattr(nx, "topological_sort", forbidden)
    monkeypatch.setattr(nx, "lexicographical_topological_sort", forbidden)
    net(torch.randn(2, 3, 64, 64))


def test_plan_frees_values_after_last_use(tiny_space):
    net = compile_graph(tiny_space)
    freed = [s for step in net.plan for s in step.free]
    assert len(freed) == len(set(freed))  # each value freed exactly once
    assert len(freed) == len(net.plan)  # every value but the output is freed


def test_graph_without_choices_is_a_plain_network(tiny_space):
    net = compile_graph(sample_architecture(tiny_space, 0))
    assert net.arch is None and list(net.arch_parameters()) == []
    assert not any("mixer" in type(m).__name__.lower() and hasattr(m, "label") for m in net.modules())


def test_relaxation_that_cannot_handle_a_choice_fails_at_compile_time(tiny_space):
    with pytest.raises(NotImplementedError, match="L1_s4"):
        compile_graph(tiny_space, relaxation=Relaxation())


def test_weights_transfer_from_supernet_to_derived_net(tiny_space):
    supernet = compile_graph(tiny_space)
    arch = sample_architecture(tiny_space, 2)
    fixed = compile_graph(arch)
    copied = transfer_weights(supernet, fixed)
    assert copied == len(fixed.state_dict())
    for name, tensor in fixed.state_dict().items():
        assert torch.equal(tensor, supernet.state_dict()[name])


def test_subnet_mode_of_supernet_matches_derived_network(tiny_space):
    """Subnet mode computes exactly the derived network (same weights, same function)."""
    from archgraph.core.decode import decisions

    torch.manual_seed(0)
    supernet = compile_graph(tiny_space).eval()
    scores = supernet.arch.scores()
    from archgraph import decode

    arch = decode(tiny_space, scores["ops"], scores["inputs"])
    fixed = compile_graph(arch).eval()
    transfer_weights(supernet, fixed)
    x = torch.randn(1, 3, 64, 64)
    ops, inputs = decisions(supernet.choices, scores["ops"], scores["inputs"])
    with torch.no_grad(), supernet.relaxation.fixed_subnet(ops, inputs):
        a = supernet(x)
    assert torch.allclose(a, fixed(x), atol=1e-5)


def test_deterministic_builder():
    from archgraph.core.graph import graphs_equal

    a = build_space("dcss", {"layers": 3})
    b = build_space("dcss", {"layers": 3})
    assert graphs_equal(a, b)
    assert graphs_equal(sample_architecture(a, 7), sample_architecture(b, 7))


def _batch_norms(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def test_supernet_batch_norm_at_choice_points_is_not_affine_derived_networks_are(tiny_space):
    from archgraph.config import SearchConfig
    from archgraph.strategies.dcnas import DCNAS, DCNASParams

    supernet = DCNAS(tiny_space, DCNASParams(), SearchConfig(), seed=0).build_supernet()  # search.affine_bn: null
    for node, module in supernet.nodes.items():
        searchable = supernet.choices.op_choice(node) or supernet.choices.input_choice(node)
        bns = _batch_norms(module)
        assert bns, node
        assert all(bn.affine == (not searchable) for bn in bns), node  # stems and head keep gamma/beta
        if searchable:
            assert all(bn.weight is None and bn.bias is None for bn in bns)
    derived = compile_graph(sample_architecture(tiny_space, 3))
    assert all(bn.affine for bn in _batch_norms(derived))
    assert all(bn.affine for bn in _batch_norms(compile_graph(tiny_space)))  # compile_graph's own default
    affine = DCNAS(tiny_space, DCNASParams(), SearchConfig(affine_bn=True), seed=0).build_supernet()
    assert all(bn.affine for bn in _batch_norms(affine))


def test_non_affine_supernet_transfers_to_and_computes_the_derived_network(tiny_space):
    from archgraph import decode
    from archgraph.core.decode import decisions

    torch.manual_seed(0)
    supernet = compile_graph(tiny_space, choice_bn_affine=False).train()
    with torch.no_grad():
        for _ in range(2):  # move the running statistics away from (0, 1)
            supernet(torch.randn(2, 3, 64, 64))
    supernet.eval()
    scores = supernet.arch.scores()
    fixed = compile_graph(decode(tiny_space, scores["ops"], scores["inputs"])).eval()
    copied = transfer_weights(supernet, fixed)
    not_copied = [k for k in fixed.state_dict() if k not in supernet.state_dict()]
    assert not_copied and all(k.endswith((".weight", ".bias")) for k in not_copied)  # gamma/beta at choice points only
    assert copied == len(fixed.state_dict()) - len(not_copied)
    x = torch.randn(1, 3, 64, 64)
    ops, inputs = decisions(supernet.choices, scores["ops"], scores["inputs"])
    with torch.no_grad(), supernet.relaxation.fixed_subnet(ops, inputs):
        a = supernet(x)
    assert torch.allclose(a, fixed(x), atol=1e-5)


def test_checkpoint_with_other_batch_norm_names_the_switch(tiny_space):
    from archgraph.errors import CheckpointError

    old = compile_graph(tiny_space).state_dict()  # affine, as checkpoints before search.affine_bn
    new = compile_graph(tiny_space, choice_bn_affine=False)
    with pytest.raises(CheckpointError, match="search.affine_bn: true"):
        new.load_state_dict(old)
    with pytest.raises(CheckpointError, match="search.affine_bn: false"):
        compile_graph(tiny_space).load_state_dict(new.state_dict())
    new.load_state_dict(compile_graph(tiny_space, choice_bn_affine=False).state_dict())  # same kind: loads


# ------------------------------------------------------------------------------------------------
# A strategy whose draw_pass() and mixers disagree is told which node, what was drawn and what is expected


class _DrawnInputs(torch.nn.Module):
    """An input mixer that sums the inputs its relaxation says it uses (right or wrong)."""

    def __init__(self, relaxation):
        super().__init__()
        self.__dict__["relaxation"] = relaxation

    def forward(self, inputs, branches):
        from archgraph.core.relaxation import sum_branches

        return sum_branches(inputs, branches, self.relaxation.used)


class _WrongDraw(Relaxation):
    """A tiny sampling strategy's relaxation: draw_pass() returns ``drawn`` for every input choice,
    the mixers use ``used``; ops are mixed by softmax (every op runs)."""

    name = "wrong-draw"

    def __init__(self, drawn, used=(0,)):
        self.drawn, self.used = drawn, list(used)

    def draw_pass(self, sequence, arch, training):
        from archgraph.core.choices import InputChoice

        return self.drawn if not isinstance(self.drawn, list) else {c.node: list(self.drawn) for c in sequence if isinstance(c, InputChoice)}

    def input_mixer(self, choice, arch):
        return _DrawnInputs(self)

    def op_mixer(self, choice, arch, channels):
        from archgraph.core.relaxation import SoftmaxOpMix

        return SoftmaxOpMix(choice.label, arch, self)


@pytest.mark.parametrize(
    "drawn, used, message",
    [
        (
            [],
            (0,),
            r"node '\w+': the relaxation's draw_pass\(\) chose no input for its input choice, and the node is on a path to the head; "
            r"expected a list of 1 to \d distinct candidate indices, integers in 0\.\.\d",
        ),
        ([9], (0,), r"node '\w+': the relaxation's draw_pass\(\) chose candidates \[9\] for its input choice.*expected a list of 1 to \d"),
        ([None], (0,), r"node '\w+': the relaxation's draw_pass\(\) drew \[None\] for its input choice; expected a list of 1 to \d"),
        ("all", (0,), r"the relaxation's draw_pass\(\) returned str 'all'; expected a mapping \{input-choice node: candidate indices computed\}"),
        (
            [0],
            (1,),
            r"node '\w+': its input mixer used an input outside the draw: _WrongDraw\.draw_pass\(\) drew \[0\] of its \d candidate inputs, "
            r"so '\w+'.* were not computed; a mixer must run exactly the candidates draw_pass\(\) returns",
        ),
    ],
    ids=["nothing-drawn", "out-of-range", "not-an-index", "not-a-mapping", "mixer-reads-outside-the-draw"],
)
def test_a_wrong_draw_pass_names_the_node_the_draw_and_what_is_expected(tiny_space, drawn, used, message):
    """Before, each of these surfaced as a raw TypeError (conv2d() received NoneType, '<' not supported)."""
    from archgraph.errors import GraphError

    net = compile_graph(tiny_space, _WrongDraw(drawn, used))
    with pytest.raises(GraphError, match=message) as info:
        net(torch.randn(1, 3, 32, 32))
    assert "\n" not in str(info.value)
    net.prune_dead = False  # no draw is consumed: every node runs, every mixer input exists
    if not isinstance(drawn, str):
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 3, 32, 32)
