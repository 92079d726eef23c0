"""Choice points a graph exposes, and the architecture-parameter store.

Two kinds, both discovered from node attributes (the graph is the only source of truth):

- :class:`OpChoice` — a node with several candidate ``ops``: pick one (alpha, one entry per op).
- :class:`InputChoice` — a node with ``keep_inputs=k``: pick k of its ``candidate`` edges (beta, one
  entry per candidate edge, in the node's predecessor order). A node may also have ``fixed`` inputs,
  which it always uses: they are no part of the choice (not in ``candidates``, no beta entry), and the
  compiler hands an input mixer the candidates' tensors and branches only, so a strategy sees the same
  kind of choice point either way.

Choices carry a ``label``; nodes that share a label share one parameter vector (as NNI's memo
sharing), e.g. every cell of a repeated-cell space. By default the label is the node id.

**Nested graphs.** The choice points inside a ``cell`` node's ``body`` are discovered too, right after
the cell in execution order, under a *qualified* node id ``"<cell>/<body node>"`` (see
:func:`qualify` / :func:`resolve_node`); their default label is that qualified id, so every cell
instance gets its own parameters unless the body sets shared labels (Auto-DeepLab: one alpha for
every cell of the trellis). Strategies see no difference: they only ever read labels and candidates.

**Choice kinds.** ``"op"`` and ``"input"`` are the kinds the compiler relaxes through a strategy's
mixers. A space may declare further kinds in ``graph.graph["choice_kinds"]`` (e.g. a channel-width
choice it needs a custom relaxation for); :func:`choice_kinds` reports them, and
:func:`archgraph.core.registry.check_support` refuses a strategy that does not declare it handles them.

**Beta normalisation.** By default softmax(beta) is taken over a node's incoming edges (DCNAS Eq. 3-4).
A space can instead declare ``graph.graph["beta_groups"]``: a list of groups, each a list of
``[target node, candidate node]`` candidate edges whose beta entries are normalised *together*
(Auto-DeepLab, Liu et al. 2019 Eq. 6: the outgoing directions of each source cell); every candidate
edge must then be in exactly one group.
beta stays one parameter vector per input-choice label (strategies that edit beta directly keep
working); :meth:`ArchParams.input_logits` then returns log of the group-normalised probabilities,
whose softmax over a node's inputs keeps their paper ratios (the per-node total, a positive scalar,
is removed by the batch norm that follows every input in that space).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import torch
from torch import nn

from archgraph.errors import GraphError
from archgraph.core.graph import candidate_inputs, execution_order, node_spec

SEP = "/"  # qualified ids of nested nodes: "<cell>/<body node>" (node ids never contain it... see qualify)
CORE_KINDS: tuple[str, ...] = ("op", "input")  # the kinds the compiler relaxes through mixers


@dataclass(frozen=True)
class OpChoice:
    node: str
    label: str
    candidates: tuple[str, ...]  # op names


@dataclass(frozen=True)
class InputChoice:
    node: str
    label: str
    candidates: tuple[str, ...]  # source node ids of the candidate edges, in predecessor order (fixed inputs excluded)
    keep: int


@dataclass(frozen=True)
class ChoicePoints:
    ops: tuple[OpChoice, ...]
    inputs: tuple[InputChoice, ...]
    # beta entries normalised together (one group per source node) when the graph asks for
    # outgoing normalisation; empty = the default softmax over each node's inputs
    beta_groups: tuple[tuple[tuple[str, int], ...], ...] = ()
    # extra kinds the graph declares (graph.graph["choice_kinds"]), beyond op/input
    extra_kinds: tuple[str, ...] = ()
    decoder: str | None = field(default=None, compare=False)  # graph.graph["decoder"], if any
    graph: nx.DiGraph | None = field(default=None, compare=False, repr=False)  # the graph they came from

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds of choice point present: ``op``, ``input`` and any the graph declares."""
        found = {"op"} if self.ops else set()
        if self.inputs:
            found.add("input")
        return frozenset(found | set(self.extra_kinds))

    def __len__(self) -> int:
        return len(self.ops) + len(self.inputs)

    @property
    def op_labels(self) -> dict[str, int]:
        return {c.label: len(c.candidates) for c in self.ops}

    @property
    def input_labels(self) -> dict[str, int]:
        return {c.label: len(c.candidates) for c in self.inputs}

    def op_choice(self, node: str) -> OpChoice | None:
        return next((c for c in self.ops if c.node == node), None)

    def input_choice(self, node: str) -> InputChoice | None:
        return next((c for c in self.inputs if c.node == node), None)


def qualify(prefix: str, node: str) -> str:
    """The qualified id of ``node`` of the body of cell ``prefix`` (``prefix`` empty: top level)."""
    return f"{prefix}{SEP}{node}" if prefix else node


def resolve_node(g: nx.DiGraph, qualified: str) -> tuple[nx.DiGraph, str]:
    """(the graph that holds the node, its local id) for a possibly qualified node id."""
    graph, parts = g, qualified.split(SEP)
    for cell in parts[:-1]:
        if cell not in graph or node_spec(graph, cell).body is None:
            raise GraphError(f"{qualified!r}: {cell!r} is not a cell with a body in graph {graph.graph.get('name')!r}")
        graph = node_spec(graph, cell).body
    if parts[-1] not in graph:
        raise GraphError(f"{qualified!r}: no node {parts[-1]!r} in graph {graph.graph.get('name')!r}")
    return graph, parts[-1]


def discover_choices(g: nx.DiGraph) -> ChoicePoints:
    """Every choice point of ``g`` (and of nested cell bodies) in execution order; shared labels must
    agree on their size."""
    ops: list[OpChoice] = []
    inputs: list[InputChoice] = []
    sizes: dict[tuple[str, str], int] = {}
    _discover(g, "", ops, inputs, sizes)
    groups = _beta_groups(g, inputs)
    extra = g.graph.get("choice_kinds") or ()
    if isinstance(extra, str) or not all(isinstance(k, str) for k in extra):
        raise GraphError(f"graph {g.graph.get('name')!r}: choice_kinds must be a list of names, got {extra!r}")
    extra = tuple(k for k in dict.fromkeys(extra) if k not in CORE_KINDS)
    return ChoicePoints(tuple(ops), tuple(inputs), groups, extra, g.graph.get("decoder"), g)


def _discover(g: nx.DiGraph, prefix: str, ops: list[OpChoice], inputs: list[InputChoice], sizes: dict[tuple[str, str], int]) -> None:
    for local in execution_order(g):
        spec = node_spec(g, local)
        n = qualify(prefix, local)
        label = spec.label or n
        if "." in label:
            raise GraphError(f"node {n!r}: choice label {label!r} contains '.'; use letters, digits, '_' or '-'")
        if spec.has_op_choice:
            ops.append(OpChoice(n, label, spec.ops))
            _check_shared(sizes, ("op", label), len(spec.ops), n)
        if spec.has_input_choice:
            preds = tuple(qualify(prefix, p) for p in candidate_inputs(g, local))
            inputs.append(InputChoice(n, label, preds, int(spec.keep_inputs)))
            _check_shared(sizes, ("input", label), len(preds), n)
        if spec.body is not None:
            _discover(spec.body, n, ops, inputs, sizes)


def _beta_groups(g: nx.DiGraph, inputs: list[InputChoice]) -> tuple[tuple[tuple[str, int], ...], ...]:
    """``graph.graph["beta_groups"]`` as (label, index) entries, checked to cover every edge once."""
    declared = g.graph.get("beta_groups")
    if not declared:
        return ()
    where = f"graph {g.graph.get('name')!r}: beta_groups"
    index = {(c.node, src): (c.label, i) for c in inputs for i, src in enumerate(c.candidates)}
    groups, seen = [], {}
    for group in declared:
        entries = []
        for item in group:
            if not isinstance(item, (list, tuple)) or len(item) != 2 or tuple(item) not in index:
                raise GraphError(f"{where} names {item!r}, not a [target, candidate] pair of an input choice")
            entry = index[tuple(item)]
            if entry in seen and seen[entry] != len(groups):
                raise GraphError(f"{where}: edge {item!r} (label {entry[0]!r}) is in two groups; each edge belongs to one")
            seen[entry] = len(groups)
            if entry not in entries:
                entries.append(entry)
        groups.append(tuple(entries))
    missing = sorted({e for e in index.values()} - set(seen))
    if missing:
        raise GraphError(f"{where} leaves input-choice entries {missing[:4]} in no group; list every candidate edge")
    return tuple(groups)


def choice_kinds(g: nx.DiGraph) -> frozenset[str]:
    """The kinds of choice point ``g`` contains (``op``, ``input``, and any it declares)."""
    return discover_choices(g).kinds


def _check_shared(sizes: dict[tuple[str, str], int], key: tuple[str, str], size: int, node: str) -> None:
    if sizes.setdefault(key, size) != size:
        raise GraphError(f"node {node!r} shares the {key[0]} choice label {key[1]!r} with a choice of {sizes[key]} candidates, but has {size}")


class ArchParams(nn.Module):
    """alpha (one vector per op-choice label) and beta (one per input-choice label).

    Kept in a module of its own so ``weights`` and ``architecture`` parameters never mix in one
    optimiser. Initialised as DARTS does: 1e-3 * N(0, 1), from a seeded generator.
    """

    def __init__(self, choices: ChoicePoints, seed: int = 0, init_std: float = 1e-3):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.alpha = nn.ParameterDict({k: nn.Parameter(init_std * torch.randn(n, generator=gen)) for k, n in choices.op_labels.items()})
        self.beta = nn.ParameterDict({k: nn.Parameter(init_std * torch.randn(n, generator=gen)) for k, n in choices.input_labels.items()})
        # outgoing normalisation: for every (label, index), the (label, index) entries of its group
        self.__dict__["_groups"] = {entry: group for group in choices.beta_groups for entry in group}

    def op_logits(self, label: str) -> torch.Tensor:
        return self.alpha[label]

    def input_logits(self, label: str) -> torch.Tensor:
        """beta of ``label``; with outgoing normalisation, log of its group-normalised probabilities."""
        if not self._groups:
            return self.beta[label]
        raw = self.beta[label]
        out = []
        for i in range(raw.numel()):
            group = self._groups[(label, i)]
            if len(group) == 1:  # a source with one way out: probability 1 (log 0), no gradient
                out.append(raw[i] - raw[i])
                continue
            entries = torch.stack([self.beta[l][j] for l, j in group])
            out.append(raw[i] - torch.logsumexp(entries, 0))
        return torch.stack(out)

    def scores(self) -> dict[str, dict[str, list[float]]]:
        """softmax(alpha) and softmax(beta) per label: what the decoder and renderer consume.

        With outgoing normalisation the input scores are the group-normalised probabilities (each
        source's outgoing edges sum to one), the transition probabilities Auto-DeepLab's Viterbi
        decoder multiplies along a path; their order within a node is softmax(beta)'s.
        """
        with torch.no_grad():
            if self._groups:
                inputs = {k: self.input_logits(k).exp().tolist() for k in self.beta}
            else:
                inputs = {k: torch.softmax(v, -1).tolist() for k, v in self.beta.items()}
            return {
                "ops": {k: torch.softmax(v, -1).tolist() for k, v in self.alpha.items()},
                "inputs": inputs,
            }
