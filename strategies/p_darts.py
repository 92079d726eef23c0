"""P-DARTS: progressive search with a deepening supernet and shrinking candidate sets.

Chen, Xie, Wu, Tian. "Progressive Differentiable Architecture Search: Bridging the Depth Gap between
Search and Evaluation", ICCV 2019 (arXiv:1904.12760); official code: github.com/chenxin061/pdarts.

What the official code does, and what runs here on any space through its choice points:

- **Stages** (3). Each stage builds a *fresh* supernet (new weights, new architecture parameters;
  only the candidate sets carry over) from a deeper space (paper 5 -> 11 -> 17 cells; here the
  space's integer ``layers`` hyper-parameter, by default ceil(L/3) -> ceil(2L/3) -> L) and smaller
  candidate sets: after every stage but the last the ``drop[s]`` lowest-softmax(alpha) ops of each op
  choice are removed (paper, 8 ops: 8 -> 5 -> 3, then 1 at the end; DCSS's 6 ops: 6 -> 4 -> 2 -> 1).
  A node of the deeper space that did not exist before inherits the set of its nearest node (same
  kind, closest layer, then closest scale). Graph edits are confined to the ``ops`` node attribute.
- **Search-space regularisation.** Dropout on the outputs of parameter-free candidates with a rate per
  stage (0.0 / 0.4 / 0.7), decaying within a stage exactly as the official schedule does; and a cap
  (2) on how many parameter-free ops the final architecture keeps: the kept one with the lowest
  probability is replaced by its node's next best op until the cap holds.
- Bi-level first-order alternation (the architecture step first, Adam lr 6e-4, betas (0.5, 0.999),
  weight decay 1e-3, architecture gradients clipped like the weights'), weight-only warm-up epochs
  (10 of 25) at the start of every stage.
- **Budgets.** ``search.budget=official`` runs ``search.epochs`` per stage, as the official
  ``--epochs`` (three stages: 3x the weight steps of a one-stage strategy). Under an equalised budget
  (equal-steps, equal-time) the ``search.epochs`` and ``search.warmup_epochs`` of the whole search are
  spread over the stages (:func:`spread`), so it takes the weight and architecture steps of the others.

Input choices, which the DARTS cell space lacks (it ranks edges by their best op weight), are relaxed
with softmax(beta) over every input (DCNAS Eq. 3-4). See docs/strategies.md for every mapping.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import networkx as nx
import torch
import torch.nn.functional as F
from torch import nn

from archgraph.core.choices import SEP, ArchParams, InputChoice, OpChoice, resolve_node
from archgraph.core.compile import CompiledNetwork
from archgraph.configtools import bounded
from archgraph.core.decode import decode
from archgraph.errors import ConfigError
from archgraph.core.graph import log2
from archgraph.core.ops import OPS, get_op
from archgraph.core.registry import register_strategy
from archgraph.core.relaxation import Mixer, Relaxation, SoftmaxInputMix
from archgraph.core.spaces_api import build_space
from archgraph.strategies.base import CheckSettings, Scores, Strategy
from archgraph.strategies.darts_family import PaperArchParams, check_arch_params, paper_adam, warmup_from_fraction, warn_unread_shared_keys

Candidates = dict[str, list[str]]  # node id -> candidate ops of its op choice (one op = fixed)


@dataclass
class PDARTSParams(PaperArchParams):
    """Options of P-DARTS (the ``strategy`` config section when ``strategy.name: p_darts``)."""

    warmup_fraction: float = bounded(0.4, 0, 1, hi_open=True)  # weight-only epochs at the start of every stage (official: 10 of 25)
    stages: int = bounded(3, 1)
    drop: list[int] = field(default_factory=lambda: [2, 2])  # ops dropped per op choice after each stage but the last
    stage_layers: list[int] = field(default_factory=list)  # depth per stage; empty: ceil(L*(s+1)/stages)
    dropout: list[float] = field(default_factory=lambda: [0.0, 0.4, 0.7])  # parameter-free op dropout per stage
    dropout_decay: float = bounded(0.2, 0)  # p = rate * exp(-decay * architecture epochs done) (official scale_factor)
    free_ops: list[str] = field(default_factory=list)  # ops regularised; empty: every op flagged parameter_free
    max_free: int = bounded(2, -1)  # parameter-free ops the final architecture may keep (-1: no cap)


class FreeOpDropoutMix(Mixer):
    """softmax(alpha)-weighted mix of every candidate; dropout on the parameter-free candidates' outputs."""

    def __init__(self, label: str, arch: ArchParams, relaxation: "PDARTSRelaxation", regularised: Sequence[bool]):
        super().__init__(label, arch, relaxation)
        self.regularised = tuple(regularised)

    def forward(self, x: torch.Tensor, ops: Sequence[nn.Module]) -> torch.Tensor:
        fixed = self.subnet_op()
        if fixed is not None:  # the derived network has no dropout
            return ops[fixed](x)
        w = torch.softmax(self.arch.op_logits(self.label), dim=-1)
        p = self.relaxation.dropout if self.training else 0.0
        out = None
        for i, op in enumerate(ops):
            y = op(x)
            if p > 0 and self.regularised[i]:
                y = F.dropout(y, p, training=True)
            out = w[i] * y if out is None else out + w[i] * y
        return out

    def extra_repr(self) -> str:
        return f"label={self.label!r}, regularised={list(self.regularised)}"


class PDARTSRelaxation(Relaxation):
    """DARTS's continuous relaxation with dropout on parameter-free candidates (rate set per epoch)."""

    name = "p_darts"

    def __init__(self, free_ops: frozenset[str]):
        self.free_ops = free_ops
        self.dropout = 0.0

    def input_mixer(self, choice: InputChoice, arch: ArchParams) -> nn.Module:
        return SoftmaxInputMix(choice.label, arch, self)

    def op_mixer(self, choice: OpChoice, arch: ArchParams, channels: int) -> nn.Module:
        return FreeOpDropoutMix(choice.label, arch, self, [op in self.free_ops for op in choice.candidates])


# --------------------------------------------------------------------------------------------------
# Candidate sets: shrinking them, carrying them to a deeper graph


def shrink(net: CompiledNetwork, current: Candidates, drop: int, keep_parametric: frozenset[str] | None = None) -> Candidates:
    """Drop the ``drop`` lowest softmax(alpha) ops of every op choice of ``net`` (at least one stays).

    Ties drop the earlier candidate first (numpy argmin, as the official ``get_min_k``). Nodes whose set
    already has one op keep it. The kept ops stay in their original order.

    ``keep_parametric`` (the capped parameter-free ops, when the cap is on): a set that would keep
    only such ops keeps its strongest other op instead of its weakest capped one, so the cap can
    always replace a capped op by a candidate it does not count (as the official cap, which counts
    skip_connect only, always can). Still exactly ``drop`` ops are dropped.
    """
    out = {n: list(ops) for n, ops in current.items()}
    if net.arch is None:
        return out
    for c in net.choices.ops:
        p = torch.softmax(net.arch.op_logits(c.label).detach(), -1).tolist()
        n_keep = len(c.candidates) - min(drop, len(c.candidates) - 1)
        ranked = sorted(range(len(p)), key=lambda i: (-p[i], -i))  # strongest first; ties keep the later one
        kept = ranked[:n_keep]
        if keep_parametric is not None and all(c.candidates[i] in keep_parametric for i in kept):
            other = [i for i in ranked[n_keep:] if c.candidates[i] not in keep_parametric]
            if other:
                kept = kept[:-1] + other[:1]
        out[c.node] = [op for i, op in enumerate(c.candidates) if i in kept]
    return out


def searchable_nodes(g: nx.DiGraph, prefix: str = "") -> list[str]:
    """Ids of every node with an op choice, cell bodies included (``cell/node``, as choice points)."""
    found = []
    for n in g.nodes:
        if len(g.nodes[n].get("ops", ())) > 1:
            found.append(prefix + n)
        body = g.nodes[n].get("body")
        if body is not None:
            found += searchable_nodes(body, f"{prefix}{n}{SEP}")
    return found


def _node_attrs(g: nx.DiGraph, node: str) -> dict[str, Any]:
    holder, local = resolve_node(g, node)
    return holder.nodes[local]


def _inherited_for(node: str, g: nx.DiGraph, inherited: Candidates, positions: Mapping[str, tuple[str, int, int]]) -> str | None:
    """Whose candidate set ``node`` takes: its own, else the nearest old node's. A node inside a new
    cell takes the set of the same body node in another cell: cells share alpha (one label per body
    node), so every cell's set for it is the same."""
    if node in inherited:
        return node
    if SEP in node:
        local = node.rsplit(SEP, 1)[1]
        return next((m for m in inherited if m.rsplit(SEP, 1)[-1] == local and SEP in m), None)
    return nearest(node, g, {m: positions[m] for m in inherited if m in positions})


def nearest(node: str, g: nx.DiGraph, positions: Mapping[str, tuple[str, int, int]]) -> str | None:
    """The node of ``positions`` (kind, layer, scale) closest to ``node`` of ``g``: same kind, closest
    layer (a deeper layer that is new inherits from the deepest old one), then closest scale."""
    kind, layer, scale = g.nodes[node]["kind"], g.nodes[node]["layer"], g.nodes[node]["scale"]
    same = [(abs(l - layer), abs(log2(s) - log2(scale)), -l, m) for m, (k, l, s) in positions.items() if k == kind]
    return min(same)[-1] if same else None


def apply_candidates(g: nx.DiGraph, inherited: Candidates, positions: Mapping[str, tuple[str, int, int]]) -> tuple[nx.DiGraph, Candidates]:
    """``g`` with every op choice narrowed to its inherited set; returns the graph and the sets applied.

    A node's own set if it has one, else its nearest node's; only ops the node offers are kept (a
    space may offer different ops per node), and an empty intersection leaves the node's own ops.
    """
    applied: Candidates = {}
    for n in searchable_nodes(g):
        holder, local = resolve_node(g, n)
        own = list(holder.nodes[local]["ops"])
        source = _inherited_for(n, g, inherited, positions)
        wanted = set(inherited[source]) if source is not None else set(own)
        kept = [op for op in own if op in wanted] or own
        holder.nodes[local]["ops"] = kept
        applied[n] = kept
    return g, applied


def _positions(g: nx.DiGraph) -> dict[str, tuple[str, int, int]]:
    return {n: (g.nodes[n]["kind"], int(g.nodes[n]["layer"]), int(g.nodes[n]["scale"])) for n in g.nodes}


def spread(total: int, parts: int) -> list[int]:
    """``total`` epochs over ``parts`` stages as evenly as possible, the later stages taking the
    remainder (the last stage's supernet is the one the architecture is derived from)."""
    base, extra = divmod(max(total, 0), parts)
    return [base + (1 if i >= parts - extra else 0) for i in range(parts)]


# --------------------------------------------------------------------------------------------------
# The strategy


@register_strategy("p_darts", PDARTSParams)
class PDARTS(Strategy):
    """P-DARTS: stages of a deepening supernet, shrinking op sets, parameter-free op regularisation."""

    name = "p_darts"
    # the checks' tiny runs: two stages (a stage change, resumed); one stage on the planted graph (tests/test_p_darts.py tests the stages)
    checks = CheckSettings(options={"stages": 2, "drop": [2], "dropout": [0.0, 0.4]}, planted_options={"stages": 1, "drop": [], "dropout": [0.0]})

    def __init__(self, graph: nx.DiGraph, params: PDARTSParams, search, seed: int = 0):
        self._check(params)
        if getattr(search, "budget", "official") != "official" and search.epochs - search.warmup_epochs < params.stages:
            raise ConfigError(
                f"search.budget={search.budget} spreads search.epochs={search.epochs} (of which search.warmup_epochs={search.warmup_epochs} "
                f"weight-only) over P-DARTS's {params.stages} stages, each needing an architecture epoch; raise search.epochs to at least "
                f"{search.warmup_epochs + params.stages} or lower strategy.stages"
            )
        self.free_ops = frozenset(params.free_ops) if params.free_ops else frozenset(n for n, op in OPS.items() if op.parameter_free)
        self.stage = 0
        self.candidates: Candidates = {}  # the sets the current stage's graph was built with (saved in checkpoints)
        self.free_kept = 0
        self.free_replaced: list[str] = []
        super().__init__(graph, params, search, seed)
        self.depths = self._stage_depths(graph)
        warn_unread_shared_keys(self, params, per_stage=True)

    @staticmethod
    def _check(p: PDARTSParams) -> None:
        check_arch_params(p)
        if p.stages < 1:
            raise ConfigError(f"strategy.stages must be >= 1, got {p.stages}")
        if len(p.drop) != p.stages - 1 or any(d < 0 for d in p.drop):
            raise ConfigError(f"strategy.drop needs {p.stages - 1} non-negative counts (one per stage but the last), got {p.drop}; e.g. strategy.drop=[2,2]")
        if len(p.dropout) != p.stages or any(not 0 <= r < 1 for r in p.dropout):
            raise ConfigError(f"strategy.dropout needs {p.stages} rates in [0, 1) (one per stage), got {p.dropout}; e.g. strategy.dropout=[0.0,0.4,0.7]")
        if p.stage_layers and (len(p.stage_layers) != p.stages or any(d < 1 for d in p.stage_layers)):
            raise ConfigError(f"strategy.stage_layers needs {p.stages} depths >= 1 (or [] for ceil(L*(s+1)/stages)), got {p.stage_layers}")
        if p.dropout_decay < 0:
            raise ConfigError(f"strategy.dropout_decay must be >= 0, got {p.dropout_decay}")
        if p.max_free < -1:
            raise ConfigError(f"strategy.max_free must be >= 0, or -1 for no cap, got {p.max_free}")
        for name in p.free_ops:
            get_op(name)  # RegistryError with a did-you-mean for a typo

    def _stage_depths(self, graph: nx.DiGraph) -> list[int | None]:
        """Depth per stage, or None everywhere when the space has no integer ``layers`` to deepen."""
        p = self.params
        layers = (graph.graph.get("params") or {}).get("layers")
        deepenable = isinstance(layers, int) and not isinstance(layers, bool) and "space" in graph.graph
        if not deepenable:
            if p.stage_layers:
                raise ConfigError(f"strategy.stage_layers is set but space {graph.graph.get('space')!r} has no integer 'layers' hyper-parameter to deepen; leave strategy.stage_layers empty")
            return [None] * p.stages
        if p.stage_layers:
            return list(p.stage_layers)
        return [max(1, math.ceil(layers * (s + 1) / p.stages)) for s in range(p.stages)]

    def make_relaxation(self) -> PDARTSRelaxation:
        return PDARTSRelaxation(self.free_ops)

    def arch_optimizer(self, net: CompiledNetwork) -> torch.optim.Optimizer | None:
        opt = paper_adam(net, self.params)
        clip = self.search.grad_clip
        if opt is not None and clip > 0:  # the official code clips alpha's gradient like the weights'
            params = [p for group in opt.param_groups for p in group["params"]]

            def clip_arch_grads(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
                torch.nn.utils.clip_grad_norm_(params, clip)

            opt.register_step_pre_hook(clip_arch_grads)
        return opt

    def warmup_epochs(self) -> int:
        return self.stage_warmup_epochs(self.stage) if self.equalised() else warmup_from_fraction(self.params.warmup_fraction, self.epochs)

    def stage_warmup_epochs(self, stage: int) -> int:
        if self.equalised():
            return spread(self.search.warmup_epochs, self.params.stages)[stage]
        return warmup_from_fraction(self.params.warmup_fraction, self.stage_epochs(stage))

    # ---------------------------------------------------------------- stages

    def num_stages(self) -> int:
        return self.params.stages

    def stage_epochs(self, stage: int) -> int:
        """Official: ``search.epochs`` per stage, as the official ``--epochs``. Equalised budgets:
        the warm-up and the architecture epochs of ``search.epochs`` spread over the stages."""
        if not self.equalised():
            return self.search.epochs
        s = self.search
        return spread(s.warmup_epochs, self.params.stages)[stage] + spread(s.epochs - s.warmup_epochs, self.params.stages)[stage]

    def _raw_stage_graph(self, stage: int) -> nx.DiGraph:
        """The space at this stage's depth, with all of its candidate ops."""
        depth = self.depths[stage]
        g = self.space_graph
        if depth is None or depth == g.graph["params"]["layers"]:
            return copy.deepcopy(g)  # deep: cell bodies are edited in place by apply_candidates
        return build_space(g.graph["space"], {**g.graph["params"], "layers": depth})

    def _build_stage(self, stage: int, inherited: Candidates, positions: Mapping[str, tuple[str, int, int]]) -> tuple[nx.DiGraph, Candidates]:
        g = self._raw_stage_graph(stage)
        if not inherited:
            return g, {n: list(_node_attrs(g, n)["ops"]) for n in searchable_nodes(g)}
        return apply_candidates(g, inherited, positions)

    def stage_graph(self, stage: int, previous: CompiledNetwork | None) -> nx.DiGraph:
        inherited, positions = self._inherited(stage, previous)
        return self._build_stage(stage, inherited, positions)[0]

    def _inherited(self, stage: int, previous: CompiledNetwork | None) -> tuple[Candidates, dict[str, tuple[str, int, int]]]:
        """After a finished stage: its sets shrunk by its alpha. On resume: the saved sets of ``stage``."""
        if previous is not None and stage > 0:
            protect = self.free_ops if self.params.max_free >= 0 else None
            return shrink(previous, self.candidates, self.params.drop[stage - 1], protect), _positions(previous.graph)
        return dict(self.candidates), _positions(self._raw_stage_graph(stage))

    def begin_stage(self, stage: int, previous: CompiledNetwork | None) -> None:
        inherited, positions = self._inherited(stage, previous)
        self.graph, self.candidates = self._build_stage(stage, inherited, positions)
        self.stage, self.epoch = stage, 0
        self.relaxation = self.make_relaxation()  # fresh mixers; build_supernet then re-initialises everything

    # ---------------------------------------------------------------- schedule

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        super().on_epoch_start(epoch, epochs)
        self.relaxation.dropout = self.dropout_rate(epoch, epochs)

    def dropout_rate(self, epoch: int, epochs: int) -> float:
        """The official schedule: linear decay during warm-up, exponential once alpha is trained."""
        rate, warm = self.params.dropout[self.stage], self.warmup_epochs()
        if epoch < warm:
            return rate * (epochs - epoch - 1) / epochs
        return rate * math.exp(-(epoch - warm) * self.params.dropout_decay)

    def log_state(self) -> dict[str, float]:
        return {
            "stage_layers": float(self.depths[self.stage] or self.graph.graph.get("params", {}).get("layers", 0) or 0),
            "candidates_max": float(max((len(v) for v in self.candidates.values()), default=1)),
            "free_dropout": float(self.relaxation.dropout),
            "free_ops_kept": float(self.free_kept),
        }

    # ---------------------------------------------------------------- derivation with the cap

    def scores(self, net: CompiledNetwork) -> tuple[Scores, Scores]:
        """softmax(alpha), softmax(beta), with the parameter-free cap applied to the op scores.

        While the derived architecture keeps more than ``max_free`` parameter-free ops, the node whose
        kept one has the lowest probability gets probability 0 on all of its parameter-free candidates,
        so it falls back to its best other op (official ``delete_min_sk_prob`` + ``keep_1_on``, which
        count skip_connect alone, so that one zero suffices there). Applied in :meth:`scores`, so
        S-mIoU evaluates exactly the capped architecture that :meth:`derive` writes.
        """
        ops, inputs = super().scores(net)
        ops = {k: list(v) for k, v in ops.items()}
        self.free_replaced = []
        cap = self.params.max_free
        while True:
            kept = self._free_choices(net, ops, inputs)
            self.free_kept = len(kept)
            if cap < 0 or len(kept) <= cap:
                return ops, inputs
            movable = [(prob, i, label, node) for i, (prob, label, _, node) in enumerate(kept) if label and self._has_other(net, node, ops[label])]
            if not movable:  # every kept parameter-free op is its node's only kind of option left
                return ops, inputs
            _, _, label, node = min(movable)
            choice = net.choices.op_choice(node)
            for j, op in enumerate(choice.candidates):
                if op in self.free_ops:
                    ops[label][j] = 0.0
            self.free_replaced.append(node)

    def _has_other(self, net: CompiledNetwork, node: str, probs: Sequence[float]) -> bool:
        choice = net.choices.op_choice(node)
        return any(op not in self.free_ops and probs[j] > 0 for j, op in enumerate(choice.candidates))

    def _free_choices(self, net: CompiledNetwork, ops: Scores, inputs: Scores) -> list[tuple[float, str, int, str]]:
        """(probability, label, op index, node) per searched node of the derived graph that keeps a
        parameter-free op. A node whose set shrank to one free op counts too, with label "" (it cannot
        be replaced: the cap may then stay exceeded, which ``free_ops_kept`` in search.jsonl shows)."""
        derived = decode(self.graph, ops, inputs)
        out = []
        for n in self.candidates:
            if n not in derived or derived.nodes[n]["ops"][0] not in self.free_ops:
                continue
            c = net.choices.op_choice(n)
            if c is None:
                out.append((1.0, "", 0, n))
            else:
                idx = c.candidates.index(derived.nodes[n]["ops"][0])
                out.append((ops[c.label][idx], c.label, idx, n))
        return out

    # ---------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stage": self.stage, "candidates": {n: list(v) for n, v in self.candidates.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.stage = int(state.get("stage", self.stage))
        if "candidates" in state:
            self.candidates = {n: list(v) for n, v in state["candidates"].items()}
