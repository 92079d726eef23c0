"""Choice points a graph exposes, and the architecture-parameter store.

Two kinds, both discovered from node attributes (the graph is the only source of truth):

- :class:`OpChoice` — a node with several candidate ``ops``: pick one (alpha, one entry per op).
- :class:`InputChoice` — a node with ``keep_inputs=k``: pick k of its incoming edges (beta, one entry
  per incoming edge, in the node's predecessor order).

Choices carry a ``label``; nodes that share a label share one parameter vector (as NNI's memo
sharing), e.g. every cell of a repeated-cell space. By default the label is the node id.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import torch
from torch import nn

from archgraph.errors import GraphError
from archgraph.graph import execution_order, inputs_of, node_spec


@dataclass(frozen=True)
class OpChoice:
    node: str
    label: str
    candidates: tuple[str, ...]  # op names


@dataclass(frozen=True)
class InputChoice:
    node: str
    label: str
    candidates: tuple[str, ...]  # source node ids, in branch order
    keep: int


@dataclass(frozen=True)
class ChoicePoints:
    ops: tuple[OpChoice, ...]
    inputs: tuple[InputChoice, ...]

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


def discover_choices(g: nx.DiGraph) -> ChoicePoints:
    """Every choice point of ``g`` in execution order; shared labels must agree on their size."""
    ops: list[OpChoice] = []
    inputs: list[InputChoice] = []
    sizes: dict[tuple[str, str], int] = {}
    for n in execution_order(g):
        spec = node_spec(g, n)
        label = spec.label or n
        if "." in label:
            raise GraphError(f"node {n!r}: choice label {label!r} contains '.'; use letters, digits, '_' or '-'")
        if spec.has_op_choice:
            ops.append(OpChoice(n, label, spec.ops))
            _check_shared(sizes, ("op", label), len(spec.ops), n)
        if spec.has_input_choice:
            preds = tuple(inputs_of(g, n))
            inputs.append(InputChoice(n, label, preds, int(spec.keep_inputs)))
            _check_shared(sizes, ("input", label), len(preds), n)
    return ChoicePoints(tuple(ops), tuple(inputs))


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

    def op_logits(self, label: str) -> torch.Tensor:
        return self.alpha[label]

    def input_logits(self, label: str) -> torch.Tensor:
        return self.beta[label]

    def scores(self) -> dict[str, dict[str, list[float]]]:
        """softmax(alpha) and softmax(beta) per label: what the decoder and renderer consume."""
        with torch.no_grad():
            return {
                "ops": {k: torch.softmax(v, -1).tolist() for k, v in self.alpha.items()},
                "inputs": {k: torch.softmax(v, -1).tolist() for k, v in self.beta.items()},
            }
