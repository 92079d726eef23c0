"""Candidate architectures for selection: the decoder's own pick, draws from the learned
distribution, uniform draws; and the scores under which the decoder derives a candidate.

A candidate is ``(op_idx, input_idx)``, the form subnet mode and the scorers take. Draws go through
:func:`archgraph.core.decode.decisions`, so a space with its own decoding rule (Auto-DeepLab's
Viterbi path) gets candidates its decoder can derive.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

from archgraph.core.choices import ChoicePoints
from archgraph.core.compile import CompiledNetwork
from archgraph.core.decode import decisions

Candidate = tuple[dict[str, int], dict[str, list[int]]]
Scores = dict[str, list[float]]
DRAW_TRIES = 20  # draws per wanted candidate before accepting that the space holds no more distinct ones


def learns_distribution(strategy: Any) -> bool:
    """Whether the strategy learns architecture parameters (SPOS and rsws take no gradient step on
    them by design: their ``planned_arch_steps`` is None, and their mixers never read alpha/beta)."""
    return strategy.planned_arch_steps(0, 1) is not None


def own_candidate(strategy: Any, net: CompiledNetwork) -> Candidate:
    """The strategy's own pick: its scores through the decoder (the argmax rule; SPOS: the evolution's best)."""
    ops, inputs = strategy.scores(net)
    return decisions(net.choices, ops, inputs)


def key(c: Candidate) -> tuple:
    return tuple(sorted(c[0].items())), tuple(sorted((k, tuple(sorted(v))) for k, v in c[1].items()))


def _draw(choices: ChoicePoints, probs: tuple[Scores, Scores] | None, rng: random.Random) -> Candidate:
    """One architecture: per op label an op drawn from ``probs`` (uniform when None), per input
    label ``keep`` inputs drawn without replacement in proportion to ``probs`` (sequentially, as
    torch.multinomial without replacement does); as scores the decoder turns into these decisions."""
    ops: Scores = {}
    for c in choices.ops:
        if c.label in ops:
            continue
        n = len(c.candidates)
        w = probs[0][c.label] if probs is not None else [1.0] * n
        pick = rng.choices(range(n), weights=_positive(w))[0]
        ops[c.label] = [float(i == pick) for i in range(n)]
    inputs: Scores = {}
    for c in choices.inputs:
        if c.label in inputs:
            continue
        n = len(c.candidates)
        w = list(_positive(probs[1][c.label] if probs is not None else [1.0] * n))
        order: list[int] = []
        for _ in range(min(c.keep, n)):
            i = rng.choices(range(n), weights=w)[0]
            order.append(i)
            w[i] = 0.0
        inputs[c.label] = [float(len(order) - order.index(i)) if i in order else 0.0 for i in range(n)]
    return decisions(choices, ops, inputs)


def _positive(w: Sequence[float]) -> list[float]:
    """Weights random.choices accepts: negatives clipped, an all-zero vector made uniform."""
    out = [max(float(v), 0.0) for v in w]
    return out if sum(out) > 0 else [1.0] * len(out)


def draw_candidates(
    choices: ChoicePoints, k: int, seed: int, probs: tuple[Scores, Scores] | None = None, first: Sequence[Candidate] = (), accept: Callable[[Candidate], bool] | None = None
) -> list[Candidate]:
    """``k`` distinct candidates: ``first`` (e.g. the decoder's own pick), then draws from ``probs``
    (uniform when None), duplicates redrawn; fewer when the space (or the distribution's support)
    holds fewer distinct architectures. ``accept``: a hard constraint (``search.cost_limit``); a
    candidate it refuses, ``first`` included, is never returned, so it is never scored."""
    rng = random.Random(seed)
    out: list[Candidate] = []
    seen: set[tuple] = set()

    def admit(c: Candidate) -> None:
        if key(c) not in seen:
            seen.add(key(c))
            if accept is None or accept(c):
                out.append(c)

    for c in first:
        if len(out) < k:
            admit(c)
    tries = DRAW_TRIES * k
    while len(out) < k and tries > 0:
        tries -= 1
        admit(_draw(choices, probs, rng))
    return out


def budget_filter(strategy: Any) -> Callable[[Candidate], bool] | None:
    """The strategy's cost budget as a candidate filter (None without ``search.cost_limit``)."""
    budget = getattr(strategy, "budget", None)
    return None if budget is None else (lambda c: budget.within(*c))
