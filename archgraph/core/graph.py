"""The graph schema: every search space and every derived architecture is a ``networkx.DiGraph``.

Node kinds (the fixed set the compiler, decoder and renderer understand):

- ``input``  — the image. Exactly one; scale 1, 3 channels, no op, no inputs.
- ``stem``   — fixed layers that build the multi-scale pyramid (layer 0 of DCSS).
- ``fusion`` — a searchable node: shape-alignment branches for its inputs, summed (or mixed by an
  *input choice*), then one op or a mixture of candidate ops (an *op choice*).
- ``cell``   — like ``fusion`` but its op is a nested graph (``body``) for hierarchical spaces such as
  Auto-DeepLab's; the body is serialized with the outer graph.
- ``head``   — the classifier; exactly one, the only sink. It receives its inputs as a list, without
  alignment branches, and produces ``channels`` = number of classes at ``scale`` 1.

Node attributes (see :class:`NodeSpec`): ``kind``, ``layer``, ``scale`` (down-sampling factor w.r.t.
the input: 1, 4, 8, ...), ``channels``, ``ops`` (candidate op names; one name = a fixed op),
``keep_inputs`` (``k`` of an input choice: the decoder keeps the top-k of the node's ``candidate``
edges; ``None`` = no choice), ``label`` (choices with the same label share their architecture
parameters), ``body`` (nested graph of a ``cell``), ``fusion`` (how the aligned inputs are combined:
``sum``, the default, or ``concat``, see below), ``upsample`` (the mode of the alignment branches that
bring a coarser input up to the node's scale: ``bilinear``, the default, ``nearest``, ``transposed``,
``pixel_shuffle`` or a plug-in's, see :func:`archgraph.core.ops.register_upsample`).

Edge attributes (see :class:`EdgeSpec`): ``kind`` — ``candidate`` for an edge that is part of its
target's input choice, ``fixed`` for an input the node always uses, ``chosen`` (derived graphs only)
for a candidate the decoder kept on a node where the difference matters (one that also has fixed
inputs, or ``concat`` fusion); ``score`` — the probability the decoder saw when it kept the edge
(informational, drawn by the renderer).

**Fixed and chosen inputs on one node.** A node with ``keep_inputs=k`` may have ``fixed`` edges as
well as ``candidate`` ones: it always uses its fixed inputs and keeps ``k`` of its candidates (a U-Net
decoder node: the up-path is fixed, the skip is chosen). Its input choice covers the candidates only
(beta has one entry per candidate edge). The node's inputs form *slots*: each fixed input (aligned) is
a slot of its own, in predecessor order, and the candidates, mixed by the strategy's input mixer (or,
in a derived graph, the ``chosen`` inputs summed), form one slot after them. ``fusion: sum`` adds the
slots (what every node did before, so a node without fixed+candidate inputs is unchanged);
``fusion: concat`` concatenates them and a 1x1 conv + BN reduces them to the node's width (U-Net's
concatenation of skip and up-path; NNI's ``InputChoice(reduction="concat")``). Because the derived
graph marks the kept candidates ``chosen``, the 1x1 conv has the same shape in a supernet and in
every network derived from it, so weights transfer by name.

Graph attributes (``graph.graph``): ``name``, ``space`` (builder name), ``params`` (the builder's
hyper-parameters), ``num_classes``. Anything else is kept verbatim by the YAML round trip.

Why flat attribute dicts and dataclasses both: networkx users (and the renderer) read plain
``g.nodes[n]["scale"]``; code that builds or checks nodes goes through the typed :class:`NodeSpec`,
converted in exactly one place (:func:`node_spec` / :func:`add_node`).
"""

from __future__ import annotations

import hashlib
import json
import math
import weakref
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Literal

import networkx as nx
import yaml

from archgraph.io import MAX_YAML_BYTES, load_yaml_text
from archgraph.errors import GraphError

NodeKind = Literal["input", "stem", "fusion", "cell", "head"]
NODE_KINDS: tuple[str, ...] = ("input", "stem", "fusion", "cell", "head")
EdgeKind = Literal["fixed", "candidate"]
EDGE_KINDS: tuple[str, ...] = ("fixed", "candidate", "chosen")
FUSION_MODES: tuple[str, ...] = ("sum", "concat")  # how a node combines its input slots
DEFAULT_UPSAMPLE = "bilinear"  # the up-sampling mode of alignment branches unless a node names another
FORMAT = "archgraph/graph-v1"


@dataclass(frozen=True)
class NodeSpec:
    """Typed view of one node's attributes."""

    kind: str
    layer: int
    scale: int  # down-sampling factor w.r.t. the input image (1 = full resolution)
    channels: int
    ops: tuple[str, ...] = ()  # candidate ops; exactly one = fixed op; empty only for ``input``
    keep_inputs: int | None = None  # k of an input choice; None = no input choice
    label: str | None = None  # choices sharing a label share alpha/beta
    body: nx.DiGraph | None = field(default=None, compare=False)  # nested graph of a ``cell``
    fusion: str = "sum"  # sum | concat (+ 1x1 conv + BN): how the input slots are combined
    upsample: str = DEFAULT_UPSAMPLE  # the alignment branches' up-sampling mode (ops.UPSAMPLERS)

    @property
    def has_op_choice(self) -> bool:
        return len(self.ops) > 1

    @property
    def has_input_choice(self) -> bool:
        return self.keep_inputs is not None

    @property
    def op(self) -> str:
        """The fixed op of a node without an op choice."""
        if len(self.ops) != 1:
            raise GraphError(f"node has {len(self.ops)} candidate ops {list(self.ops)}, not one fixed op")
        return self.ops[0]

    def to_attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "kind": self.kind,
            "layer": int(self.layer),
            "scale": int(self.scale),
            "channels": int(self.channels),
            "ops": list(self.ops),
        }
        if self.keep_inputs is not None:
            attrs["keep_inputs"] = int(self.keep_inputs)
        if self.label is not None:
            attrs["label"] = self.label
        if self.body is not None:
            attrs["body"] = self.body
        if self.fusion != "sum":  # defaults are left out: files of spaces without them stay as they were
            attrs["fusion"] = self.fusion
        if self.upsample != DEFAULT_UPSAMPLE:
            attrs["upsample"] = self.upsample
        return attrs


@dataclass(frozen=True)
class EdgeSpec:
    """Typed view of one edge's attributes."""

    kind: str = "fixed"
    score: float | None = None

    def to_attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {"kind": self.kind}
        if self.score is not None:
            attrs["score"] = float(self.score)
        return attrs


_NODE_FIELDS = {f.name for f in fields(NodeSpec)}
_EDGE_FIELDS = {f.name for f in fields(EdgeSpec)}


def new_graph(name: str, **attrs: Any) -> nx.DiGraph:
    """An empty architecture graph with its graph-level attributes."""
    g = nx.DiGraph()
    g.graph.update({"name": name, **attrs})
    return g


def add_node(g: nx.DiGraph, node_id: str, spec: NodeSpec) -> str:
    if node_id in g:
        raise GraphError(f"node {node_id!r} already exists in graph {g.graph.get('name')!r}")
    if "." in node_id:
        raise GraphError(f"node id {node_id!r} contains '.'; use letters, digits, '_' or '-'")
    g.add_node(node_id, **spec.to_attrs())
    return node_id


def add_edge(g: nx.DiGraph, src: str, dst: str, kind: str = "fixed", score: float | None = None) -> None:
    for n in (src, dst):
        if n not in g:
            raise GraphError(f"edge {src!r} -> {dst!r}: node {n!r} does not exist")
    g.add_edge(src, dst, **EdgeSpec(kind, score).to_attrs())


# Parsed specs per graph: graph -> {node: (its attribute dict, a copy of it as parsed, the types of its
# values, the spec)}. Keyed weakly, so a graph's entries go with it, and nothing is added to the graph
# (its YAML, pickles and copies stay as they were).
_SPECS: weakref.WeakKeyDictionary[nx.DiGraph, dict[str, tuple[dict[str, Any], dict[str, Any], tuple[type, ...], NodeSpec]]] = weakref.WeakKeyDictionary()


def node_spec(g: nx.DiGraph, node_id: str) -> NodeSpec:
    """The typed spec of ``node_id``; unknown attributes are an error (they would be silently lost).

    Parsed once per node and graph, then served from a cache while the node's attributes are what
    they were when parsed: the same attribute dict (a node removed and added again has a new one),
    equal values of the same types (an ``ops`` list edited in place is compared by its contents, a
    nested ``body`` by identity). Why: the renderer, the compiler and the decoder each read every
    node's spec many times per walk, and networkx graphs are mutable (P-DARTS rewrites a stage's
    ``ops``, ``retarget`` a node's channels), so a cache must notice any edit, not only a rebuilt graph.
    """
    attrs = g.nodes[node_id]
    per_graph = _SPECS.get(g)
    if per_graph is None:
        per_graph = _SPECS[g] = {}
    hit = per_graph.get(node_id)
    if hit is not None and hit[0] is attrs and attrs == hit[1] and tuple(map(type, attrs.values())) == hit[2]:
        return hit[3]
    spec = _parse_node(node_id, attrs)
    snapshot = {k: list(v) if isinstance(v, list) else v for k, v in attrs.items()}  # lists copied: in-place edits show
    per_graph[node_id] = (attrs, snapshot, tuple(map(type, attrs.values())), spec)
    return spec


def _parse_node(node_id: str, attrs: dict[str, Any]) -> NodeSpec:
    """The :class:`NodeSpec` of one node's attribute dict, every value's type checked."""
    extra = set(attrs) - _NODE_FIELDS
    if extra:
        raise GraphError(f"node {node_id!r} has unknown attributes {sorted(extra)}; known: {sorted(_NODE_FIELDS)}")
    try:
        ops = attrs.get("ops", ())
        if isinstance(ops, (str, bytes)) or not isinstance(ops, (list, tuple)) or not all(isinstance(o, str) for o in ops):
            raise GraphError(f"node {node_id!r}: 'ops' must be a list of op names, found {ops!r}")
        keep = attrs.get("keep_inputs")
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int)):
            raise GraphError(f"node {node_id!r}: 'keep_inputs' must be an integer, found {keep!r}")
        label = attrs.get("label")
        if label is not None and not isinstance(label, str):
            raise GraphError(f"node {node_id!r}: 'label' must be a string, found {label!r}")
        body = attrs.get("body")
        if body is not None and not isinstance(body, nx.DiGraph):
            raise GraphError(f"node {node_id!r}: 'body' must be a nested graph, found {type(body).__name__}")
        kind = attrs["kind"]
        if not isinstance(kind, str):
            raise GraphError(f"node {node_id!r}: 'kind' must be a string, found {kind!r}")
        fusion, upsample = attrs.get("fusion", "sum"), attrs.get("upsample", DEFAULT_UPSAMPLE)
        for name, value in (("fusion", fusion), ("upsample", upsample)):
            if not isinstance(value, str):
                raise GraphError(f"node {node_id!r}: {name!r} must be a string, found {value!r}")
        return NodeSpec(
            kind=kind,
            layer=_as_int(attrs["layer"], node_id, "layer"),
            scale=_as_int(attrs["scale"], node_id, "scale"),
            channels=_as_int(attrs["channels"], node_id, "channels"),
            ops=tuple(ops),
            keep_inputs=keep,
            label=label,
            body=body,
            fusion=fusion,
            upsample=upsample,
        )
    except KeyError as missing:
        raise GraphError(f"node {node_id!r} lacks required attribute {missing}") from None


def _as_int(value: Any, node_id: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GraphError(f"node {node_id!r}: {name!r} must be an integer, found {value!r}")
    return value


def edge_spec(g: nx.DiGraph, src: str, dst: str) -> EdgeSpec:
    attrs = dict(g.edges[src, dst])
    extra = set(attrs) - _EDGE_FIELDS
    if extra:
        raise GraphError(f"edge {src!r} -> {dst!r} has unknown attributes {sorted(extra)}")
    return EdgeSpec(kind=attrs.get("kind", "fixed"), score=attrs.get("score"))


def input_node(g: nx.DiGraph) -> str:
    found = [n for n, k in g.nodes(data="kind") if k == "input"]
    if len(found) != 1:
        raise GraphError(f"graph {g.graph.get('name')!r} needs exactly one 'input' node, found {len(found)}")
    return found[0]


def head_node(g: nx.DiGraph) -> str:
    found = [n for n, k in g.nodes(data="kind") if k == "head"]
    if len(found) != 1:
        raise GraphError(f"graph {g.graph.get('name')!r} needs exactly one 'head' node, found {len(found)}")
    return found[0]


def inputs_of(g: nx.DiGraph, node_id: str) -> list[str]:
    """Predecessors in insertion order: the order of a node's branches and of its beta entries."""
    return list(g.predecessors(node_id))


def candidate_inputs(g: nx.DiGraph, node_id: str) -> list[str]:
    """The sources of ``node_id``'s ``candidate`` edges, in predecessor order: its input choice's candidates."""
    return [p for p in g.predecessors(node_id) if g.edges[p, node_id].get("kind", "fixed") == "candidate"]


def split_inputs(g: nx.DiGraph, node_id: str) -> tuple[list[str], list[str]]:
    """(fixed inputs, pooled inputs) of ``node_id``, each in predecessor order.

    Pooled inputs share one slot (module docstring): the ``candidate`` edges of an input choice, the
    ``chosen`` edges of a derived graph. Fixed inputs have a slot each.
    """
    fixed, pooled = [], []
    for p in g.predecessors(node_id):
        (fixed if g.edges[p, node_id].get("kind", "fixed") == "fixed" else pooled).append(p)
    return fixed, pooled


def execution_order(g: nx.DiGraph) -> list[str]:
    """A deterministic topological order (ties broken by insertion order)."""
    position = {n: i for i, n in enumerate(g.nodes)}
    return list(nx.lexicographical_topological_sort(g, key=lambda n: position[n]))


def has_choices(g: nx.DiGraph) -> bool:
    return any(node_spec(g, n).has_op_choice or node_spec(g, n).has_input_choice for n in g.nodes)


# --------------------------------------------------------------------------------------------------
# Validation


def _is_power_of_two(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


def validate(g: nx.DiGraph) -> None:
    """Check that ``g`` is a well-formed architecture graph; raise :class:`GraphError` otherwise.

    Checks: known node and edge kinds and attributes; acyclic; one input and one head; the head is
    the only sink; every node reachable from the input and reaching the head; scales are powers of two
    and every aligned edge joins scales a power of two apart; channels positive; the number of ops and
    ``keep_inputs`` fit the node's candidate edges; candidate edges only where their target has an
    input choice, ``chosen`` edges only where it has none; ``fusion`` modes known; nested bodies
    validate too.

    Whether the ops and up-sampling modes a graph names are *registered* is not the schema's business
    (this module imports nothing from the op registry, which imports it):
    :func:`archgraph.core.ops.check_known_ops` checks that, and the places that build or load a
    network call it after this.
    """
    name = g.graph.get("name", "<unnamed>")
    where = f"graph {name!r}"
    if not nx.is_directed_acyclic_graph(g):
        cycle = nx.find_cycle(g)
        raise GraphError(f"{where} has a cycle through {cycle}; architecture graphs must be acyclic")
    src, dst = input_node(g), head_node(g)
    for n in g.nodes:
        spec = node_spec(g, n)
        at = f"{where}, node {n!r}"
        if spec.kind not in NODE_KINDS:
            raise GraphError(f"{at}: unknown kind {spec.kind!r}; expected one of {NODE_KINDS}")
        if not _is_power_of_two(spec.scale):
            raise GraphError(f"{at}: scale {spec.scale} is not a power of two")
        if spec.channels <= 0:
            raise GraphError(f"{at}: channels must be positive, found {spec.channels}")
        preds = inputs_of(g, n)
        if spec.kind == "input":
            if preds or spec.ops:
                raise GraphError(f"{at}: the input node takes no inputs and no ops")
            continue
        if not preds:
            raise GraphError(f"{at}: has no inputs; connect it or remove it")
        if not spec.ops:
            raise GraphError(f"{at}: has no op; give it at least one candidate op")
        if spec.kind == "cell" and spec.body is None:
            raise GraphError(f"{at}: a cell needs a nested 'body' graph")
        if spec.body is not None:
            validate(spec.body)
        _validate_inputs(g, n, spec, preds, at, where)
        for p in preds:
            ratio = max(spec.scale, g.nodes[p]["scale"]) / min(spec.scale, g.nodes[p]["scale"])
            if not _is_power_of_two(int(ratio)) or ratio != int(ratio):
                raise GraphError(f"{where}, edge {p!r} -> {n!r}: scales {g.nodes[p]['scale']} and {spec.scale} cannot be aligned")
            if spec.kind == "head" and g.nodes[p]["scale"] < spec.scale:
                raise GraphError(f"{where}, edge {p!r} -> {n!r}: the head cannot take a finer-scale input than itself")
        if spec.kind == "head" and spec.has_input_choice:
            raise GraphError(f"{at}: the head cannot have an input choice")
    sinks = [n for n in g.nodes if g.out_degree(n) == 0]
    if sinks != [dst]:
        dangling = [n for n in sinks if n != dst]
        raise GraphError(f"{where}: nodes {dangling} feed nothing; every node must reach the head {dst!r}")
    unreachable = set(g.nodes) - nx.descendants(g, src) - {src}
    if unreachable:
        raise GraphError(f"{where}: nodes {sorted(unreachable)} are not reachable from the input {src!r}")
    not_reaching = set(g.nodes) - nx.ancestors(g, dst) - {dst}
    if not_reaching:
        raise GraphError(f"{where}: nodes {sorted(not_reaching)} do not reach the head {dst!r}")


def _validate_inputs(g: nx.DiGraph, n: str, spec: NodeSpec, preds: list[str], at: str, where: str) -> None:
    """Edge kinds, ``keep_inputs`` against the candidate edges, and the node's fusion mode."""
    for p in preds:
        kind = edge_spec(g, p, n).kind
        if kind not in EDGE_KINDS:
            raise GraphError(f"{where}, edge {p!r} -> {n!r}: unknown kind {kind!r}; expected {EDGE_KINDS}")
        if kind == "candidate" and not spec.has_input_choice:
            raise GraphError(
                f"{where}, edge {p!r} -> {n!r}: kind 'candidate' but the node has no input choice; give the node keep_inputs (how many of its candidate edges to keep) or make the edge 'fixed'"
            )
        if kind == "chosen" and (spec.has_input_choice or spec.kind not in ("stem", "fusion")):
            raise GraphError(
                f"{where}, edge {p!r} -> {n!r}: kind 'chosen' (a kept candidate of a derived graph) on a node "
                f"{'with an input choice' if spec.has_input_choice else f'of kind {spec.kind!r}'}; "
                "make it 'candidate' (supernet) or 'fixed'"
            )
    if spec.has_input_choice:
        n_cand = len(candidate_inputs(g, n))
        if n_cand == 0:
            raise GraphError(f"{at}: keep_inputs={spec.keep_inputs} but the node has no candidate inputs; mark the edges it chooses among kind='candidate' (its fixed inputs are always used)")
        if not 1 <= spec.keep_inputs <= n_cand:
            raise GraphError(f"{at}: keep_inputs={spec.keep_inputs} but the node has {n_cand} candidate inputs (and {len(preds) - n_cand} fixed); keep between 1 and {n_cand}")
    if spec.fusion not in FUSION_MODES:
        raise GraphError(f"{at}: unknown fusion {spec.fusion!r}{_did_you_mean(spec.fusion, FUSION_MODES)}; expected one of {FUSION_MODES}")
    if spec.fusion != "sum" and spec.kind not in ("stem", "fusion"):
        raise GraphError(
            f"{at}: fusion={spec.fusion!r} on a {spec.kind!r} node; only stem and fusion nodes combine their inputs (a head gets the raw list, a cell hands it to its body): remove 'fusion'"
        )


def _did_you_mean(name: str, options: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# --------------------------------------------------------------------------------------------------
# Serialization


def to_dict(g: nx.DiGraph) -> dict[str, Any]:
    """Plain-data form of a graph (YAML/JSON friendly), preserving node and edge order."""
    nodes = []
    for n in g.nodes:
        attrs = node_spec(g, n).to_attrs()
        if "body" in attrs:
            attrs["body"] = to_dict(attrs["body"])
        nodes.append({"id": n, **attrs})
    edges = []
    for u, v in g.edges:
        attrs = edge_spec(g, u, v).to_attrs()
        edges.append([u, v] if attrs == {"kind": "fixed"} else [u, v, attrs])
    return {"format": FORMAT, "graph": _plain(dict(g.graph)), "nodes": nodes, "edges": edges}


def from_dict(data: dict[str, Any], source: str = "<dict>") -> nx.DiGraph:
    """The graph of :func:`to_dict`'s form; anything malformed raises :class:`GraphError` naming it."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise GraphError(f"{source}: not an archgraph graph (format {found!r}, expected {FORMAT!r})")
    attrs, nodes, edges = data.get("graph") or {}, data.get("nodes") or [], data.get("edges") or []
    if not isinstance(attrs, dict) or not isinstance(nodes, list) or not isinstance(edges, list):
        raise GraphError(f"{source}: 'graph' must be a mapping and 'nodes', 'edges' lists")
    g = nx.DiGraph()
    g.graph.update(attrs)
    for item in nodes:
        if not isinstance(item, dict):
            raise GraphError(f"{source}: node entries are mappings with an 'id', found {item!r}")
        item = dict(item)
        node_id = item.pop("id", None)
        if not isinstance(node_id, str) or not node_id:
            raise GraphError(f"{source}: a node entry needs a non-empty string 'id', found {node_id!r}")
        if node_id in g:
            raise GraphError(f"{source}: node {node_id!r} is declared twice")
        if "body" in item:
            item["body"] = from_dict(item["body"], f"{source}, body of {node_id!r}")
        extra = set(item) - _NODE_FIELDS
        if extra:
            raise GraphError(f"{source}: node {node_id!r} has unknown attributes {sorted(map(str, extra))}")
        g.add_node(node_id, **item)
        node_spec(g, node_id)  # type check now, with the file's name in context
    for item in edges:
        if not isinstance(item, list) or len(item) not in (2, 3):
            raise GraphError(f"{source}: edge entries are [src, dst] or [src, dst, {{attrs}}], found {item!r}")
        u, v = item[0], item[1]
        attrs = item[2] if len(item) == 3 else {"kind": "fixed"}
        if not isinstance(u, str) or not isinstance(v, str) or u not in g or v not in g:
            raise GraphError(f"{source}: edge {u!r} -> {v!r} names a node that is not declared")
        if not isinstance(attrs, dict):
            raise GraphError(f"{source}: edge {u!r} -> {v!r}: attributes must be a mapping, found {attrs!r}")
        g.add_edge(u, v, **attrs)
        spec = edge_spec(g, u, v)
        if spec.score is not None and (isinstance(spec.score, bool) or not isinstance(spec.score, (int, float))):
            raise GraphError(f"{source}: edge {u!r} -> {v!r}: 'score' must be a number, found {spec.score!r}")
    return g


def _plain(value: Any) -> Any:
    """Convert tuples and numpy scalars to plain YAML types so the round trip is exact."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def to_yaml(g: nx.DiGraph) -> str:
    return yaml.safe_dump(to_dict(g), sort_keys=False, default_flow_style=None, width=120)


def from_yaml(text: str, source: str = "<string>") -> nx.DiGraph:
    try:
        data = load_yaml_text(text, source)  # bounded: archgraph.io
    except yaml.YAMLError as exc:
        raise GraphError(f"{source}: not valid YAML ({exc.__class__.__name__}: {exc})") from None
    return from_dict(data, source)


def save(g: nx.DiGraph, path: str | Path) -> Path:
    from archgraph.io import atomic_write_text

    return atomic_write_text(Path(path), to_yaml(g))


def load(path: str | Path) -> nx.DiGraph:
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"{path}: no such graph file; pass an arch.yaml written by `archgraph search` or `sample`")
    if path.stat().st_size > MAX_YAML_BYTES:  # refused before it is read (archgraph.io bounds every YAML input)
        raise GraphError(
            f"{path}: {path.stat().st_size / 2**20:.0f} MB is more than any graph file holds (at most {MAX_YAML_BYTES // 2**20} MB); pass an arch.yaml written by `archgraph search` or `sample`"
        )
    data = path.read_bytes()
    if b"\0" in data[:8192] or data.startswith(b"PK\x03\x04"):
        what = "a checkpoint or other zip archive" if data.startswith(b"PK\x03\x04") else "a binary file"
        raise GraphError(f"{path} is {what}, not a graph YAML; pass an arch.yaml (or the run folder holding it) written by `archgraph search` or `sample`")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise GraphError(f"{path} is not a text file (not UTF-8), so not a graph YAML; pass an arch.yaml (or the run folder holding it) written by `archgraph search` or `sample`") from None
    return from_yaml(text, str(path))


def graphs_equal(a: nx.DiGraph, b: nx.DiGraph) -> bool:
    """Exact equality: same graph attributes, nodes, edges, their attributes and their order."""
    return to_dict(a) == to_dict(b)


def graph_hash(g: nx.DiGraph) -> str:
    """A short canonical hash of the topology and ops (ignores names, scores and order).

    A node's ``fusion``/``upsample`` modes and an edge's ``chosen`` kind count where they are not the
    defaults (they change the network), so the hashes of graphs without them are as they always were.
    A cell's ``body`` counts by its own hash: in Auto-DeepLab's space the chosen cell ops live only
    there, and two architectures with one network path and different cells are different networks
    (they shared one hash, and so one run-cache entry, one T-mIoU).
    """
    nodes = []
    for n in g.nodes:
        s = node_spec(g, n)
        modes = [m for m in (s.fusion if s.fusion != "sum" else None, s.upsample if s.upsample != DEFAULT_UPSAMPLE else None) if m]
        body = [f"body:{graph_hash(s.body)}"] if s.body is not None else []
        nodes.append((n, sorted(s.ops), s.scale, s.channels, *modes, *body))
    nodes.sort()
    edges = sorted((u, v) if g.edges[u, v].get("kind") != "chosen" else (u, v, "chosen") for u, v in g.edges)
    blob = json.dumps([nodes, edges], sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def dump(g: nx.DiGraph) -> str:
    """One line per node in execution order: handy to read and to use as a golden string in tests."""
    lines = []
    for n in execution_order(g):
        s = node_spec(g, n)
        ops = "-" if not s.ops else s.ops[0] if len(s.ops) == 1 else "{" + ",".join(s.ops) + "}"
        fixed, pooled = split_inputs(g, n)
        parts = [", ".join(fixed)] if fixed else []
        if pooled:
            parts.append(f"{f'keep {s.keep_inputs} of' if s.has_input_choice else 'chosen'} {', '.join(pooled)}")
        mode = "" if s.fusion == "sum" else f" ({s.fusion})"
        lines.append(f"{n} = {s.kind}[L{s.layer} 1/{s.scale} C{s.channels}] {ops} <- {' + '.join(parts) or '-'}{mode}")
    return "\n".join(lines)


def log2(x: int) -> int:
    return int(round(math.log2(x)))
