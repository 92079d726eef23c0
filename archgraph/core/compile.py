"""Graph -> ``nn.Module`` with a static execution plan.

:func:`compile_graph` walks the graph exactly once: it orders the nodes, builds one
:class:`NodeModule` per node (alignment branches + ops + the mixers a relaxation supplies at choice
points), and records a flat plan of ``(node, input slots, output slot, slots to free)``. The forward
pass then only loops over that plan: no graph walking, no string parsing, and every feature map is
dropped right after its last use (torch.fx ``Interpreter``'s last-use map).

**Live subgraph.** When the relaxation draws a pass's choices up front
(:meth:`~archgraph.core.relaxation.Relaxation.draw_pass`: DCNAS, SPOS, ProxylessNAS), the forward pass
runs only the steps on a path to the head through the drawn inputs, a plan derived from the static
one by slot arithmetic and cached per draw (:mod:`archgraph.core.liveplan`). ``net.prune_dead = False``
runs every node instead (the same losses and gradients; dead nodes then still update their batch-norm
running statistics). Continuous relaxations draw nothing and always run every node.

Module names follow the graph (``nodes.<node>.branches.<source>``, ``nodes.<node>.ops.<op>``), so a
derived network and its supernet share parameter names and weights transfer with
:func:`transfer_weights`.

A ``cell`` node (hierarchical spaces such as Auto-DeepLab) aligns each of its inputs to its scale and
to the width of its body's ``input`` node, and hands the *list* of aligned inputs, in predecessor
order, to its body: a nested graph compiled the same way into a plan of its own
(``nodes.<cell>.body.nodes.<body node>...``). Inside the body, the ``input`` node's value is that list;
body nodes have the same semantics as top-level ones, and the body's head op (``takes_list``) makes
the cell's output. Choice points inside bodies are relaxed by the same relaxation and parameter store
(qualified ids ``<cell>/<node>``, see :mod:`archgraph.core.choices`).

**Batch norm at choice points.** ``choice_bn_affine=False`` (what a strategy's ``build_supernet``
passes during a search, ``search.affine_bn``) builds every BatchNorm of a node with a choice point
(the candidate ops of its op choice, and its alignment branches) without affine weight and bias, as
the DARTS-family search cells (``MixedOp`` and the ``preprocess`` layers) and SPOS's supernet blocks
do (``affine=False``): a learnable gamma per candidate could otherwise rescale what alpha/beta weight.
Stems, heads and nodes without a choice keep affine BN, and a network compiled from a derived
architecture (no choice points) is unaffected, so stand-alone training always has affine BN. Weights still transfer by name: the derived network's gamma/beta,
absent from such a supernet, keep their identity initialisation (1, 0), so subnet mode and the
derived network compute the same function.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Mapping

import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

from archgraph.core.choices import ArchParams, ChoicePoints, discover_choices, qualify
from archgraph.errors import CheckpointError, GraphError
from archgraph.core.graph import NodeSpec, execution_order, input_node, inputs_of, node_spec, split_inputs, validate
from archgraph.core.ops import build_alignment, build_fusion, build_op, check_known_ops, get_op
from archgraph.core.liveplan import LivePlan, LivePlanner, forward_choice_order
from archgraph.core.relaxation import ContinuousRelaxation, Relaxation, SingleOp, SumInputs


class NodeModule(nn.Module):
    """One graph node: ``op_mixer(input_mixer(inputs, branches), ops)``; a head gets the raw list.

    ``inputs`` come in predecessor order. A node with *slots* (fixed inputs besides pooled ones, or
    ``concat`` fusion; :mod:`archgraph.core.graph`) aligns each fixed input into a slot of its own and
    hands the input mixer only the pooled inputs (the candidates of its input choice, or a derived
    graph's ``chosen`` edges) with their branches, whose result is the last slot; the slots are then
    summed, or concatenated and reduced by ``fuse`` (1x1 conv + BN), before the op.
    """

    def __init__(
        self,
        branches: dict[str, nn.Module],
        ops: dict[str, nn.Module],
        input_mixer: nn.Module | None,
        op_mixer: nn.Module,
        takes_list: bool,
        slots: tuple[tuple[int, ...], tuple[int, ...]] | None = None,
        fuse: nn.Module | None = None,
    ):
        super().__init__()
        self.branches = nn.ModuleDict(branches)
        self.ops = nn.ModuleDict(ops)
        self.input_mixer = input_mixer
        self.op_mixer = op_mixer
        self.takes_list = takes_list
        self.fuse = fuse  # concat fusion's 1x1 conv + BN (``nodes.<node>.fuse``), else None
        # Plain tuples for the hot path: indexing a tuple beats ModuleDict lookups by name.
        self.__dict__["branch_list"] = tuple(self.branches.values())
        self.__dict__["op_list"] = tuple(self.ops.values())
        # (fixed input indices, pooled input indices); None: every input goes to the input mixer
        self.__dict__["slots"] = slots
        self.__dict__["pooled_branches"] = tuple(self.branch_list[i] for i in slots[1]) if slots else ()

    @property
    def choice_branches(self) -> tuple[nn.Module, ...]:
        """The branches the input mixer receives, in the order of the input choice's candidates (beta)."""
        return self.branch_list if self.slots is None else self.pooled_branches

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        if self.takes_list:
            return self.op_list[0](inputs)
        if self.slots is None:
            return self.op_mixer(self.input_mixer(inputs, self.branch_list), self.op_list)
        return self.op_mixer(self._fuse_slots(inputs), self.op_list)

    def _fuse_slots(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        fixed, pooled = self.slots
        parts = [self.branch_list[i](inputs[i]) for i in fixed]
        if pooled:
            parts.append(self.input_mixer([inputs[i] for i in pooled], self.pooled_branches))
        if self.fuse is not None:
            return self.fuse(torch.cat(parts, dim=1))
        out = parts[0]
        for part in parts[1:]:
            out = out + part
        return out


class CellModule(nn.Module):
    """A ``cell`` node: align every input, then run the nested body on the list of aligned inputs."""

    def __init__(self, branches: dict[str, nn.Module], body: "BodyNetwork"):
        super().__init__()
        self.branches = nn.ModuleDict(branches)
        self.body = body
        self.__dict__["branch_list"] = tuple(self.branches.values())

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.body([branch(x) for branch, x in zip(self.branch_list, inputs)])


class BodyNetwork(nn.Module):
    """The compiled body of a cell: its own node modules and flat plan (no networkx at run time)."""

    def __init__(self, nodes: dict[str, nn.Module], plan: tuple["Step", ...]):
        super().__init__()
        self.nodes = nn.ModuleDict(nodes)
        self.plan = plan
        self.__dict__["modules_in_order"] = tuple(self.nodes[s.node] for s in plan)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        values: list = [None] * (len(self.plan) + 1)
        values[0] = inputs
        for step, module in zip(self.plan, self.modules_in_order):
            out = module([values[i] for i in step.inputs])
            for i in step.free:
                values[i] = None
            values[step.output] = out
        return values[self.plan[-1].output]


@dataclass(frozen=True)
class Step:
    node: str
    inputs: tuple[int, ...]  # value slots read
    output: int  # value slot written
    free: tuple[int, ...]  # slots whose last reader is this step


class CompiledNetwork(nn.Module):
    """A network compiled from a graph. ``arch`` is ``None`` when the graph has no choice points."""

    def __init__(self, graph: nx.DiGraph, relaxation: Relaxation | None = None, arch: ArchParams | None = None, arch_seed: int = 0, choice_bn_affine: bool = True):
        super().__init__()
        self.choice_bn_affine = choice_bn_affine
        validate(graph)
        check_known_ops(graph)  # ops a space or plug-in registers in its own module exist once plug-ins load
        self.graph = graph
        self.choices: ChoicePoints = discover_choices(graph)
        if len(self.choices):
            relaxation = relaxation or ContinuousRelaxation()
            relaxation.check(self.choices)
            arch = arch if arch is not None else ArchParams(self.choices, seed=arch_seed)
        else:
            arch = None
        self.relaxation = relaxation
        self.arch = arch
        order = execution_order(graph)
        self.input_name = input_node(graph)
        self.pad_multiple = max(graph.nodes[n]["scale"] for n in graph.nodes)
        self.nodes = nn.ModuleDict({n: self._build_node(n) for n in order if n != self.input_name})
        self.plan = self._build_plan(order)
        # Live-subgraph execution (archgraph.core.liveplan): with a relaxation that draws before the
        # pass, run only the nodes on a path to the head. False runs every node (today's behaviour).
        self.prune_dead = True
        self.live_plan: LivePlan | None = None  # the last pruned forward's plan (live counts for logs and benchmarks)
        self._choice_order = forward_choice_order(graph, self.choices)
        self._live_planner = LivePlanner(self.plan, {n: i for i, n in enumerate(order)}, self.choices)

    # ---------------------------------------------------------------- construction (runs once)

    def _build_node(self, n: str, g: nx.DiGraph | None = None, prefix: str = "") -> nn.Module:
        g = self.graph if g is None else g
        spec = node_spec(g, n)
        preds = inputs_of(g, n)
        in_specs = [node_spec(g, p) for p in preds]
        q = qualify(prefix, n)  # the id choice points use
        if spec.kind == "cell":
            return self._build_cell(n, g, prefix)
        takes_list = get_op(spec.ops[0]).takes_list
        if takes_list and len(spec.ops) > 1:
            raise GraphError(f"node {n!r}: head-style op {spec.ops[0]!r} cannot be part of an op choice")
        if takes_list:
            return NodeModule({}, {name: build_op(name, spec, in_specs) for name in spec.ops}, None, SingleOp(), True)
        branches = {p: build_alignment(ps, spec) for p, ps in zip(preds, in_specs)}
        in_choice = self.choices.input_choice(q)
        op_choice = self.choices.op_choice(q)
        op_spec = replace(spec, channels=self.relaxation.op_width(op_choice, spec.channels)) if op_choice else spec
        ops = {name: build_op(name, op_spec, in_specs) for name in spec.ops}
        slots, fuse = _input_slots(g, n, spec, preds)
        if not self.choice_bn_affine and (op_choice or in_choice):  # a search network's searchable node
            for module in [*(ops.values() if op_choice else ()), *branches.values(), *([fuse] if fuse is not None else [])]:
                drop_bn_affine(module)
        input_mixer = self.relaxation.input_mixer(in_choice, self.arch) if in_choice else SumInputs()
        op_mixer = self.relaxation.op_mixer(op_choice, self.arch, spec.channels) if op_choice else SingleOp()
        return NodeModule(branches, ops, input_mixer, op_mixer, False, slots, fuse)

    def _build_cell(self, n: str, g: nx.DiGraph, prefix: str) -> CellModule:
        """Branches align each input to (cell scale, body input width); the body compiles recursively."""
        spec = node_spec(g, n)
        q = qualify(prefix, n)
        body = spec.body
        assert body is not None  # validate() guarantees it
        if spec.has_input_choice or spec.has_op_choice:
            raise GraphError(f"node {q!r}: a cell's choices live in its body; give the cell one op name and no keep_inputs")
        body_in = input_node(body)
        width = node_spec(body, body_in).channels
        target = replace(spec, channels=width)
        branches = {p: build_alignment(node_spec(g, p), target) for p in inputs_of(g, n)}
        order = execution_order(body)
        nodes = {m: self._build_node(m, body, q) for m in order if m != body_in}
        return CellModule(branches, BodyNetwork(nodes, self._build_plan(order, body, body_in)))

    def _build_plan(self, order: list[str], g: nx.DiGraph | None = None, input_name: str | None = None) -> tuple[Step, ...]:
        g = self.graph if g is None else g
        input_name = self.input_name if input_name is None else input_name
        slot = {n: i for i, n in enumerate(order)}
        last_use: dict[int, str] = {}
        for n in order:
            for p in inputs_of(g, n):
                last_use[slot[p]] = n
        frees: dict[str, list[int]] = {}
        for s, n in last_use.items():
            frees.setdefault(n, []).append(s)
        return tuple(Step(n, tuple(slot[p] for p in inputs_of(g, n)), slot[n], tuple(sorted(frees.get(n, ())))) for n in order if n != input_name)

    # ---------------------------------------------------------------- execution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.pad_multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        values: list[torch.Tensor | None] = [None] * (len(self.plan) + 1)
        values[0] = x
        relax = self.relaxation
        if relax is not None:
            relax.begin_pass()  # the pass's lifecycle: begin_pass, draw_pass (opt-in), the mixers, end_pass
        drawing = self.prune_dead and relax is not None and self.arch is not None
        try:
            computed = relax.draw_pass(self._choice_order, self.arch, self.training) if drawing else None
            if computed is None:
                steps, modules = self.plan, self._node_modules
            else:
                live = self.live_plan = self._live_planner.plan_for(computed)
                steps, modules = live.steps, tuple(map(self._node_modules.__getitem__, live.indices))
            for step, module in zip(steps, modules):
                try:
                    out = module([values[i] for i in step.inputs])  # an undrawn input may be None: its mixer never reads it
                except TypeError as exc:  # e.g. conv2d() given None: a mixer read an input outside the draw
                    if computed is not None:
                        self._check_drawn_inputs(step, values, computed, exc)
                    raise
                for i in step.free:
                    values[i] = None
                values[step.output] = out
        finally:
            if drawing:
                relax.end_pass()
        y = values[self.plan[-1].output]
        return y[..., :h, :w] if (ph or pw) else y

    def _check_drawn_inputs(self, step: Step, values: list, computed: Mapping[str, object], exc: TypeError) -> None:
        """Raise a :class:`GraphError` naming the node, the draw and the inputs left out of it when
        ``step`` failed with ``exc`` while some of its inputs were not computed: its mixer used an
        input that the relaxation's ``draw_pass()`` did not draw (the mixers and the draw disagree).
        Returns when every input was there (the TypeError is then the op's own)."""
        missing = [i for i in step.inputs if values[i] is None]
        if not missing:
            return
        names = {s.output: s.node for s in self.plan} | {0: self.input_name}
        choice = self.choices.input_choice(step.node)
        what = f"of its {len(choice.candidates)} candidate inputs" if choice is not None else "(the node has no input choice)"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        left_out = ", ".join(repr(names[i]) for i in missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise GraphError(
            f"node {step.node!r}: its input mixer used an input outside the draw: {type(self.relaxation).__name__}.draw_pass() "
            f"drew {computed.get(step.node)!r} {what}, so {left_out} were not computed; a mixer must "
            f"run exactly the candidates draw_pass() returns for the pass (TypeError: {first[:120]})"
        ) from exc

    @property
    def _node_modules(self) -> tuple[NodeModule, ...]:
        cached = self.__dict__.get("_node_module_cache")
        if cached is None:
            cached = tuple(self.nodes[s.node] for s in self.plan)
            self.__dict__["_node_module_cache"] = cached
        return cached

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As :meth:`nn.Module.load_state_dict`; a strict load of a checkpoint whose batch norms at
        choice points have affine weights into a supernet built without them (or the reverse) names
        the config switch instead of listing every key."""
        if strict:
            own = self.state_dict()
            unexpected = [k for k in state_dict if k not in own]
            missing = [k for k in own if k not in state_dict]
            if (unexpected or missing) and all(_is_bn_affine_key(self, k) for k in unexpected + missing):
                have = "has" if unexpected else "lacks"
                raise CheckpointError(
                    f"this checkpoint {have} the affine weights of the batch norms at choice points (e.g. {(unexpected + missing)[0]!r}) "
                    f"but the supernet was built with search.affine_bn={'false' if unexpected else 'true'}; set search.affine_bn: "
                    f"{'true' if unexpected else 'false'} in the run's config.yaml (checkpoints written before that switch existed used affine batch norm)"
                )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ---------------------------------------------------------------- parameter groups

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Network weights (SGD); never the architecture parameters."""
        return self.nodes.parameters()

    def arch_parameters(self) -> Iterator[nn.Parameter]:
        """alpha and beta (Adam in bi-level search); empty for a fixed network."""
        return iter(()) if self.arch is None else self.arch.parameters()


def _input_slots(g: nx.DiGraph, n: str, spec: NodeSpec, preds: list[str]) -> tuple[tuple[tuple[int, ...], tuple[int, ...]] | None, nn.Module | None]:
    """(fixed, pooled) input indices of a node with slots, or ``None`` (every input to the mixer),
    and concat fusion's reduction. The 1x1 conv sees one slot per fixed input plus one for the pooled
    ones, which a supernet and its derived networks agree on (the decoder marks kept candidates
    ``chosen``), so the conv has one shape in both and its weights transfer by name."""
    fixed, pooled = split_inputs(g, n)
    if spec.fusion == "sum" and not (fixed and pooled):
        return None, None  # one group: the input mixer (or plain sum) sees every input, as always
    where = {p: i for i, p in enumerate(preds)}
    slots = (tuple(where[p] for p in fixed), tuple(where[p] for p in pooled))
    fuse = build_fusion(spec, len(fixed) + (1 if pooled else 0)) if spec.fusion == "concat" else None
    return slots, fuse


def compile_graph(graph: nx.DiGraph, relaxation: Relaxation | None = None, arch: ArchParams | None = None, arch_seed: int = 0, choice_bn_affine: bool = True) -> CompiledNetwork:
    """Compile ``graph``. With choice points and no relaxation: the continuous relaxation (Eq. 1-4).

    ``choice_bn_affine=False``: batch norms of nodes with a choice point (candidate ops, alignment
    branches) have no affine weight and bias (search networks; see the module docstring). A graph without choice
    points is compiled the same either way.
    """
    return CompiledNetwork(graph, relaxation, arch, arch_seed, choice_bn_affine)


def drop_bn_affine(module: nn.Module) -> nn.Module:
    """Remove the affine weight and bias of every BatchNorm in ``module`` (in place, as if built with
    ``affine=False``); running statistics are kept. Returns ``module``."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            m.affine = False
            m.weight = None
            m.bias = None
    return module


def _is_bn_affine_key(net: nn.Module, key: str) -> bool:
    """Whether ``key`` names the weight or bias of a BatchNorm of ``net`` (affine or not)."""
    owner, _, leaf = key.rpartition(".")
    if leaf not in ("weight", "bias"):
        return False
    try:
        return isinstance(net.get_submodule(owner), nn.modules.batchnorm._BatchNorm)
    except AttributeError:
        return False


def transfer_weights(src: nn.Module | Mapping[str, torch.Tensor], dst: CompiledNetwork) -> int:
    """Copy every tensor of ``dst`` whose name and shape exist in ``src`` (a module, or a state dict
    such as a checkpoint's): supernet -> derived net, or a trained run -> a run for other classes.

    Returns how many tensors were copied. Because module names follow node ids, op names and source
    ids, the derived net's kept branches and chosen ops receive exactly the supernet's weights.
    """
    source = src.state_dict() if isinstance(src, nn.Module) else src
    target = dst.state_dict()
    copied = 0
    with torch.no_grad():
        for k, v in target.items():
            if k in source and source[k].shape == v.shape:
                v.copy_(source[k])
                copied += 1
    return copied
