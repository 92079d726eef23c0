"""The BFS decoder: architecture scores -> a graph without choice points.

1. Every op choice keeps its argmax op.
2. Every input choice keeps its ``k`` best candidate edges (``k`` = the node's ``keep_inputs`` unless
   overridden); ties go to the earlier edge so decoding is deterministic. A node's ``fixed`` inputs
   are always kept. Where the distinction matters for what the node computes (the node also has
   fixed inputs, or ``concat`` fusion: :mod:`archgraph.core.graph`), the kept candidates become
   ``chosen`` edges, so the derived node pools them into one slot as the supernet's mixer did;
   elsewhere they are plain ``fixed`` edges, as they always were.
3. A breadth-first search from the head backwards along kept edges collects what reaches the output;
   everything else is dropped.

The result validates, serializes and compiles on its own. Scores are plain ``{label: [p, ...]}``
dicts (what :meth:`ArchParams.scores` returns), so a strategy can hand over transformed scores (e.g.
PC-DARTS multiplies op and edge weights) without the decoder knowing any strategy.

Nested cell bodies are decoded the same way, recursively (their choice points have qualified ids,
see :mod:`archgraph.core.choices`).

**Space-specific decoding rules.** A space whose final architecture is derived by another rule
(Auto-DeepLab: a Viterbi path over the trellis and DARTS's top-2 cell decoding) names a decoder in
its graph, ``graph.graph["decoder"] = "<name>"``, registered with :func:`register_decoder` (in the
space's module, loaded with the space's plug-in). :func:`decode` and :func:`decisions` dispatch on
it, so strategies, the search loop and the CLI keep calling the same two functions and the graph
stays the single source of truth. The decisions hook maps scores to the op/input indices of the
supernet's subnet mode, i.e. what S-mIoU evaluates.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import networkx as nx

from archgraph.core.choices import ChoicePoints, discover_choices, qualify
from archgraph.errors import GraphError
from archgraph.core.registry import Registry
from archgraph.core.graph import NodeSpec, add_edge, add_node, head_node, inputs_of, new_graph, node_spec, split_inputs, validate

Scores = Mapping[str, Sequence[float]]
DecodeFn = Callable[[nx.DiGraph, Scores, Scores, "int | None"], nx.DiGraph]
DecisionsFn = Callable[[ChoicePoints, Scores, Scores, "int | None"], tuple[dict[str, int], dict[str, list[int]]]]
# graph attributes that describe a supernet's choices; a derived graph (no choices) drops them
SUPERNET_ONLY_ATTRS = ("beta_groups", "choice_kinds")


@dataclass(frozen=True)
class Decoder:
    """A space's own decoding rule: ``decode(graph, op_scores, input_scores, keep) -> derived graph``
    and, optionally, ``decisions(choices, op_scores, input_scores, keep) -> (op idx, input idx)`` for
    the supernet's subnet mode (the default decisions are used when it is ``None``).

    ``rewires``: the rule may connect two nodes of the space that its supernet does not connect
    (Auto-DeepLab's derived network feeds each cell the path's cell two layers back), so an
    architecture file of such a space is checked for its nodes, not its edges."""

    name: str
    decode: DecodeFn
    decisions: DecisionsFn | None = None
    rewires: bool = False

    @property
    def registered(self) -> DecodeFn:
        return self.decode


DECODER_REGISTRY: Registry[Decoder] = Registry("decoder", "archgraph.decoders", named=False)  # entry points name modules
DECODERS: dict[str, Decoder] = DECODER_REGISTRY.table


def register_decoder(name: str, decisions: DecisionsFn | None = None, rewires: bool = False) -> Callable[[DecodeFn], DecodeFn]:
    """Register ``fn`` as the decoder a graph selects with ``graph.graph["decoder"] = name``."""

    def deco(fn: DecodeFn) -> DecodeFn:
        DECODER_REGISTRY.add(name, Decoder(name, fn, decisions, rewires))
        return fn

    return deco


def get_decoder(graph: nx.DiGraph | None) -> Decoder | None:
    """The decoder ``graph`` names, or ``None`` for the default BFS decoder."""
    name = None if graph is None else graph.graph.get("decoder")
    if name is None:
        return None
    if name not in DECODERS:
        from archgraph.core.registry import load_plugins

        load_plugins()
    if name not in DECODERS:
        raise GraphError(
            f"graph {graph.graph.get('name')!r} names decoder {name!r}, which is not registered "
            f"(registered: {', '.join(sorted(DECODERS)) or 'none'}); install the plug-in of space {graph.graph.get('space')!r}"
        )
    return DECODERS[name]


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def _top_k(values: Sequence[float], k: int) -> list[int]:
    return sorted(sorted(range(len(values)), key=lambda i: (-values[i], i))[:k])


def decisions(choices: ChoicePoints, op_scores: Scores, input_scores: Scores, keep: int | None = None) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Steps 1-2 of decoding as indices per choice label: the argmax op, the top-k inputs.

    The same indices drive a supernet's subnet mode (:meth:`Relaxation.fixed_subnet`), so S-mIoU
    evaluates exactly what :func:`decode` derives. A space's decoder may supply its own rule.
    """
    decoder = get_decoder(choices.graph) if choices.decoder else None
    if decoder is not None and decoder.decisions is not None:
        return decoder.decisions(choices, op_scores, input_scores, keep)
    return default_decisions(choices, op_scores, input_scores, keep)


def default_decisions(choices: ChoicePoints, op_scores: Scores, input_scores: Scores, keep: int | None = None) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Argmax op per op label, top-k inputs per input label."""
    ops = {c.label: _argmax(_scores_for(op_scores, c.label, len(c.candidates), c.node, "op")) for c in choices.ops}
    inputs = {}
    for c in choices.inputs:
        probs = _scores_for(input_scores, c.label, len(c.candidates), c.node, "input")
        inputs[c.label] = _top_k(probs, min(keep or c.keep, len(c.candidates)))
    return ops, inputs


def decode(graph: nx.DiGraph, op_scores: Scores, input_scores: Scores, keep: int | None = None) -> nx.DiGraph:
    """Derive the final architecture from ``graph`` and the scores of its choice points (with the
    space's own decoder when the graph names one, else the BFS decoder)."""
    decoder = get_decoder(graph)
    if decoder is not None:
        return decoder.decode(graph, op_scores, input_scores, keep)
    return bfs_decode(graph, op_scores, input_scores, keep)


def bfs_decode(graph: nx.DiGraph, op_scores: Scores, input_scores: Scores, keep: int | None = None) -> nx.DiGraph:
    """The default rule: argmax ops, top-k inputs, BFS from the head; nested bodies alike."""
    choices = discover_choices(graph)
    op_idx, input_idx = default_decisions(choices, op_scores, input_scores, keep)
    chosen_ops = {c.node: c.candidates[op_idx[c.label]] for c in choices.ops}
    kept: dict[str, list[tuple[str, float]]] = {c.node: [(c.candidates[i], float(input_scores[c.label][i])) for i in input_idx[c.label]] for c in choices.inputs}
    derived = derive_graph(graph, chosen_ops, kept)
    validate(derived)
    return derived


def derive_graph(graph: nx.DiGraph, chosen_ops: Mapping[str, str], kept: Mapping[str, Sequence[tuple[str, float]]], prefix: str = "") -> nx.DiGraph:
    """``graph`` reduced to the chosen ops and kept edges, minus what no longer reaches the head.

    ``chosen_ops`` / ``kept`` are keyed by qualified node id (kept sources qualified too); nodes with
    no entry keep their ops / all their inputs. Cell bodies are reduced recursively.
    """

    def local(q: str) -> str:
        return q[len(prefix) + 1 :] if prefix else q

    kept_local = {local(n): [(local(p), sc) for p, sc in v] for n, v in kept.items() if (n.rsplit("/", 1)[0] if "/" in n else "") == prefix}
    head = head_node(graph)
    reached = {head}
    queue = deque([head])
    while queue:
        n = queue.popleft()
        sources = _always_kept(graph, n) + [p for p, _ in kept_local[n]] if n in kept_local else inputs_of(graph, n)
        for p in sources:
            if p not in reached:
                reached.add(p)
                queue.append(p)

    attrs = {k: v for k, v in graph.graph.items() if k != "name" and k not in SUPERNET_ONLY_ATTRS}
    derived = new_graph(f"{graph.graph.get('name', 'arch')}-derived", **attrs)
    for n in graph.nodes:  # keep the supernet's node order: stable files, stable drawings
        if n not in reached:
            continue
        s = node_spec(graph, n)
        q = qualify(prefix, n)
        ops = (chosen_ops[q],) if q in chosen_ops else s.ops
        body = derive_graph(s.body, chosen_ops, kept, q) if s.body is not None else None
        add_node(derived, n, NodeSpec(s.kind, s.layer, s.scale, s.channels, ops, None, None, body, s.fusion, s.upsample))
    for n in derived.nodes:
        if n in kept_local:
            _add_kept_inputs(graph, derived, n, kept_local[n])
        else:
            for p in inputs_of(graph, n):
                add_edge(derived, p, n)
    return derived


def _always_kept(graph: nx.DiGraph, n: str) -> list[str]:
    """The fixed inputs of a node with candidate edges (they are kept whatever is chosen); none for a
    node without candidates, whose kept list, where a space's rule gives one, names all it keeps."""
    fixed, pooled = split_inputs(graph, n)
    return fixed if any(graph.edges[p, n].get("kind") == "candidate" for p in pooled) else []


def _add_kept_inputs(graph: nx.DiGraph, derived: nx.DiGraph, n: str, kept: Sequence[tuple[str, float]]) -> None:
    """The fixed inputs and the kept candidates of ``n``; the candidates as ``chosen`` edges where the
    node has slots (fixed inputs besides them, or concat fusion), in the supernet's predecessor order."""
    fixed = _always_kept(graph, n)
    has_candidates = any(graph.edges[p, n].get("kind") == "candidate" for p in inputs_of(graph, n))
    if not has_candidates or (not fixed and node_spec(graph, n).fusion == "sum"):
        for p, score in kept:
            add_edge(derived, p, n, score=score)
        return
    score = dict(kept)
    for p in inputs_of(graph, n):
        if p in fixed:
            add_edge(derived, p, n)
        elif p in score:
            add_edge(derived, p, n, kind="chosen", score=score[p])


def _scores_for(scores: Scores, label: str, size: int, node: str, what: str) -> Sequence[float]:
    if label not in scores:
        raise GraphError(f"no {what} scores for choice {label!r} (node {node!r}); the scores do not belong to this graph")
    values = scores[label]
    if len(values) != size:
        raise GraphError(f"{what} scores for {label!r} have {len(values)} entries, node {node!r} has {size} candidates")
    return values


# --------------------------------------------------------------------------------------------------
# Architectures by name: ops and kept inputs per node id instead of score lists in label order


def scores_by_name(
    graph: nx.DiGraph,
    ops: Mapping[str, str] | None = None,
    inputs: Mapping[str, Sequence[str]] | None = None,
    default_op: str | None = None,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """One-hot scores that make :func:`decode` pick exactly the named ops and inputs of ``graph``.

    ``ops`` maps a node id (qualified ``<cell>/<node>`` inside a cell body) to the op it runs,
    ``inputs`` maps a node id to the sources it keeps (as many as its ``keep_inputs``); a node with
    an op choice left out runs ``default_op`` when that is given. The result also feeds
    :func:`decisions` (the supernet's subnet mode). Unknown nodes, ops and sources, nodes without that
    kind of choice, a wrong number of inputs and two nodes of one shared label given different
    decisions raise :class:`GraphError` naming the node and what it accepts. Choice points given
    nothing (and no ``default_op``) get a placeholder (their first candidates): use
    :func:`derive_by_name`, which refuses them wherever they end up in the architecture.
    """
    ops, inputs = dict(ops or {}), {k: list(v) for k, v in (inputs or {}).items()}
    choices = discover_choices(graph)
    where = f"space {graph.graph.get('name', 'graph')!r}"
    op_at = {c.node: c for c in choices.ops}
    in_at = {c.node: c for c in choices.inputs}
    every = _all_node_ids(graph)
    for what, given, table in (("ops", ops, op_at), ("inputs", inputs, in_at)):
        for node in given:
            if node in table:
                continue
            if node not in every:
                raise GraphError(f"{what}: {where} has no node {node!r}{_close(node, every)}")
            kind = "op" if what == "ops" else "input"
            fixed = "op" if what == "ops" else "inputs"
            with_kind = sorted(table)
            raise GraphError(f"{what}: node {node!r} has no {kind} choice (its {fixed} {'is' if what == 'ops' else 'are'} fixed); nodes with one: {_few(with_kind)}")
    if default_op is not None and not any(default_op in c.candidates for c in choices.ops):
        raise GraphError(f"default_op {default_op!r} is a candidate of no op choice of {where}{_close(default_op, {o for c in choices.ops for o in c.candidates})}")
    op_scores: dict[str, list[float]] = {}
    op_from: dict[str, str] = {}
    for c in choices.ops:  # the ops given by node
        if c.node not in ops:
            continue
        name = ops[c.node]
        if name not in c.candidates:
            raise GraphError(f"ops: node {c.node!r} has no candidate op {name!r}{_close(name, c.candidates)} (its candidates: {', '.join(c.candidates)})")
        scores = [1.0 if op == name else 0.0 for op in c.candidates]
        if c.label in op_from and op_scores[c.label] != scores:
            raise GraphError(f"ops: nodes {op_from[c.label]!r} and {c.node!r} share the op choice label {c.label!r} (one decision), but were given different ops; give them the same op")
        op_scores[c.label], op_from[c.label] = scores, c.node
    for c in choices.ops:  # then default_op where it is a candidate, then a placeholder (the first op)
        if c.label not in op_scores:
            pick = c.candidates.index(default_op) if default_op in c.candidates else 0
            op_scores[c.label] = [1.0 if i == pick else 0.0 for i in range(len(c.candidates))]
    in_scores: dict[str, list[float]] = {}
    in_from: dict[str, str] = {}
    for c in choices.inputs:
        if c.node not in inputs:
            in_scores.setdefault(c.label, [1.0 if i < c.keep else 0.0 for i in range(len(c.candidates))])
            continue
        kept = [_qualified_source(c, s) for s in inputs[c.node]]
        if len(set(kept)) != len(kept):
            raise GraphError(f"inputs: node {c.node!r} lists a source twice ({inputs[c.node]})")
        if len(kept) != c.keep:
            raise GraphError(f"inputs: node {c.node!r} keeps {c.keep} of its inputs (keep_inputs), got {len(kept)}: {inputs[c.node]}")
        scores = [1.0 if src in kept else 0.0 for src in c.candidates]
        if c.label in in_from and in_scores[c.label] != scores:
            raise GraphError(f"inputs: nodes {in_from[c.label]!r} and {c.node!r} share the input choice label {c.label!r} (one decision), but were given different inputs; give them the same ones")
        in_scores[c.label], in_from[c.label] = scores, c.node
    return op_scores, in_scores


def derive_by_name(
    graph: nx.DiGraph,
    ops: Mapping[str, str] | None = None,
    inputs: Mapping[str, Sequence[str]] | None = None,
    default_op: str | None = None,
) -> nx.DiGraph:
    """The architecture of ``graph`` (a supernet) with the named ops and kept inputs, decoded as a
    search's would be (the space's decoding rule, then what reaches the head)::

        arch = derive_by_name(supernet, ops={"L1_s4": "mbconv_k3_r3", ...}, inputs={"L2_s8": ["L1_s4", "stem_s8"], ...})

    Every choice point that ends up in the architecture must be given (or, for op choices, covered
    by ``default_op``); one that the kept inputs leave out of it needs nothing (entries for it are
    accepted and have no effect). Errors name the node and what it accepts (see
    :func:`scores_by_name`). ``decisions(discover_choices(graph), *scores_by_name(...))`` gives the
    same architecture as indices for the supernet's subnet mode.
    """
    ops, inputs = dict(ops or {}), dict(inputs or {})
    op_scores, in_scores = scores_by_name(graph, ops, inputs, default_op)
    arch = decode(graph, op_scores, in_scores)
    choices = discover_choices(graph)
    given_ops = {c.label for c in choices.ops if c.node in ops}  # a shared label is one decision
    given_inputs = {c.label for c in choices.inputs if c.node in inputs}
    missing_inputs = [c for c in choices.inputs if c.label not in given_inputs and c.keep < len(c.candidates) and _in_architecture(arch, c.node)]
    if missing_inputs:
        c = missing_inputs[0]
        raise GraphError(f"inputs: {_nodes(missing_inputs)} part of the architecture but no inputs are given; {c.node!r} keeps {c.keep} of: {', '.join(_local(s) for s in c.candidates)}")
    missing_ops = [c for c in choices.ops if c.label not in given_ops and default_op not in c.candidates and _in_architecture(arch, c.node)]
    if missing_ops:
        extra = "" if default_op is None else f" (default_op {default_op!r} is not a candidate there)"
        raise GraphError(f"ops: {_nodes(missing_ops)} part of the architecture but no op is given{extra}; candidates of {missing_ops[0].node!r}: {', '.join(missing_ops[0].candidates)}")
    return arch


def _nodes(missing) -> str:
    names = [repr(c.node) for c in missing]
    return f"node {names[0]} is" if len(names) == 1 else f"nodes {_few(names)} are"


def _all_node_ids(g: nx.DiGraph, prefix: str = "") -> set[str]:
    """Every node id of ``g``, nested bodies as qualified ids."""
    out = set()
    for n in g.nodes:
        q = qualify(prefix, n)
        out.add(q)
        body = g.nodes[n].get("body")
        if body is not None:
            out |= _all_node_ids(body, q)
    return out


def _in_architecture(arch: nx.DiGraph, qualified: str) -> bool:
    graph, parts = arch, qualified.split("/")
    for cell in parts[:-1]:
        if cell not in graph or graph.nodes[cell].get("body") is None:
            return False
        graph = graph.nodes[cell]["body"]
    return parts[-1] in graph


def _local(q: str) -> str:
    return q.rsplit("/", 1)[-1]


def _qualified_source(c, source: str) -> str:
    """An input choice's candidate named by its local or qualified id."""
    if source in c.candidates:
        return source
    prefix = c.node.rsplit("/", 1)[0] + "/" if "/" in c.node else ""
    if prefix + source in c.candidates:
        return prefix + source
    local = [_local(s) for s in c.candidates]
    raise GraphError(f"inputs: {source!r} is not a candidate input of node {c.node!r}{_close(source, local)} (its candidates: {', '.join(local)})")


def _close(name: str, options) -> str:
    import difflib

    close = difflib.get_close_matches(str(name), sorted(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _few(names: Sequence[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "") if names else "none"


def uniform_scores(choices: ChoicePoints, seed: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Scores that make :func:`decode` pick uniformly at random at every choice point.

    A one-hot op score picks a uniform op; a random permutation as input scores makes the top-k a
    uniform k-subset. Shared labels get one draw, as they share one decision.
    """
    rng = random.Random(seed)
    ops: dict[str, list[float]] = {}
    for c in choices.ops:
        if c.label not in ops:
            pick = rng.randrange(len(c.candidates))
            ops[c.label] = [1.0 if i == pick else 0.0 for i in range(len(c.candidates))]
    inputs: dict[str, list[float]] = {}
    for c in choices.inputs:
        if c.label not in inputs:
            order = list(range(len(c.candidates)))
            rng.shuffle(order)
            inputs[c.label] = [float(len(order) - order.index(i)) for i in range(len(order))]
    return ops, inputs


def sample_architecture(graph: nx.DiGraph, seed: int) -> nx.DiGraph:
    """A random architecture of the space: uniform at every choice point, then decoded."""
    ops, inputs = uniform_scores(discover_choices(graph), seed)
    return decode(graph, ops, inputs)
