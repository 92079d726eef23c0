"""How decided the architecture parameters are: entropies of the choice distributions.

Used by strategies (as a regulariser) and by the search loop (as a logged signal); it lives in the
core so the engine never imports a strategy module."""

from __future__ import annotations

import torch

from archgraph.core.compile import CompiledNetwork


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of softmax(logits)."""
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum()


def mean_entropy(net: CompiledNetwork, which: str = "both") -> torch.Tensor:
    """Mean entropy (nats) of the choice distributions (``ops``: alpha, ``inputs``: beta, ``both``);
    minimising it makes choices decisive."""
    if net.arch is None:
        raise ValueError("the network has no architecture parameters (a derived architecture); entropies need a supernet")
    vectors = []
    if which in ("both", "ops"):
        vectors += list(net.arch.alpha.values())
    if which in ("both", "inputs"):
        vectors += list(net.arch.beta.values())
    if not vectors:
        return torch.zeros(())
    return torch.stack([entropy(v) for v in vectors]).mean()


# --------------------------------------------------------------------------------------------------
# Margins and decisions: is the derived architecture more than the argmax of initialisation noise?

Scores = dict[str, list[float]]


def decision_margin(scores: list[float], keep: int) -> float | None:
    """How far the decision for one choice point is from flipping: the gap between the last kept
    score and the first dropped one (for an op choice, ``keep = 1``: top-1 minus top-2). ``None``
    when there is nothing to decide (a single candidate, or every candidate kept)."""
    if len(scores) <= keep or keep < 1:
        return None
    ordered = sorted(scores, reverse=True)
    return float(ordered[keep - 1] - ordered[keep])


def mean_margins(op_scores: Scores, input_scores: Scores, input_keep: dict[str, int]) -> dict[str, float]:
    """Mean decision margin over the op choices (``margin_alpha``) and the input choices
    (``margin_beta``, at each node's kept-count boundary); keys absent where nothing is decided."""
    out: dict[str, float] = {}
    for key, scores, keep in (("margin_alpha", op_scores, None), ("margin_beta", input_scores, input_keep)):
        values = [m for label, s in scores.items() if (m := decision_margin(list(s), 1 if keep is None else keep.get(label, 1))) is not None]
        if values:
            out[key] = sum(values) / len(values)
    return out


def changed_decisions(before: tuple[dict[str, int], dict[str, list[int]]], after: tuple[dict[str, int], dict[str, list[int]]]) -> dict[str, int]:
    """How many op choices picked another op, and how many input choices kept another set of inputs,
    between two sets of decisions (as :func:`archgraph.core.decode.decisions` returns them)."""
    ops_before, inputs_before = before
    ops_after, inputs_after = after
    return {
        "changed_ops": sum(ops_before.get(label) != idx for label, idx in ops_after.items()),
        "changed_inputs": sum(sorted(inputs_before.get(label, [])) != sorted(idx) for label, idx in inputs_after.items()),
    }
