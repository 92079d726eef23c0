"""The built-in selectors that rank candidates: ``argmax``, ``topk``, ``proxy``.

- ``argmax``: the strategy's own rule as the decoder applies it (argmax of its op scores, top-k of
  its input scores; SPOS's evolution winner; the default for every strategy but rsws).
- ``topk[:K][:uniform]``: K candidates drawn from the learned distribution (softmax(alpha) per op
  choice, the strategy's input scores for k inputs without replacement; the decoder's own pick is
  the first of the K), or uniformly with ``uniform`` (also for strategies that learn no
  distribution: SPOS, rsws); each scored with the shared weights on the selection split; the best
  is kept. K defaults to the budget rule (:func:`archgraph.engine.selection.context.auto_k`).
- ``proxy:NAME[:K]``: the same K candidates ranked by the zero-cost scorer ``NAME`` of
  :mod:`archgraph.engine.scoring` (``synflow``, ``naswot``, ``params``, ...); no shared weights.
"""

from __future__ import annotations

from typing import Sequence

from archgraph.engine.selection.candidates import budget_filter, draw_candidates, learns_distribution, own_candidate
from archgraph.engine.selection.context import SelectionContext
from archgraph.engine.selection.registry import Candidate, Selection, register_selector, whole
from archgraph.errors import ConfigError


def best(scores: Sequence[float], higher_is_better: bool = True) -> int:
    """Index of the best score; the earliest wins a tie (the decoder's own pick comes first)."""
    sign = 1.0 if higher_is_better else -1.0
    return max(range(len(scores)), key=lambda i: (sign * scores[i], -i))


@register_selector("argmax")
class ArgmaxSelector:
    """The strategy's own decoded architecture, scored once (the score is reported, not used)."""

    name = "argmax"
    spec = "argmax"

    def select(self, ctx: SelectionContext) -> Selection:
        own = own_candidate(ctx.strategy, ctx.net)
        return Selection(own, 1, ctx.score([own]), 0)


def _pool(ctx: SelectionContext, k: int | None, uniform: bool) -> tuple[list[Candidate], str]:
    """The candidates of topk and proxy, and where they come from."""
    k = ctx.auto_k if k is None else k
    accept = budget_filter(ctx.strategy)  # search.cost_limit: candidates over it are never scored
    if uniform or not learns_distribution(ctx.strategy) or ctx.net.arch is None:
        pool, source = draw_candidates(ctx.choices, k, ctx.seed, accept=accept), "uniform"
    else:
        ops, inputs = ctx.strategy.scores(ctx.net)
        pool, source = draw_candidates(ctx.choices, k, ctx.seed, (ops, inputs), first=[own_candidate(ctx.strategy, ctx.net)], accept=accept), "learned"
    if not pool:
        raise ConfigError(f"selection: no candidate drawn lies within search.cost_limit={ctx.strategy.budget.spec}; raise the limit or use a space with cheaper architectures")
    return pool, source


def _k_and_mode(args: Sequence[str], spec: str) -> tuple[int | None, bool]:
    k, uniform = None, False
    for a in args:
        if a == "uniform":
            uniform = True
        elif a in ("", "auto"):
            k = None
        else:
            k = whole(a, "K", spec)
    return k, uniform


@register_selector("topk")
class TopKSelector:
    """Best of K candidates by their shared-weight score on the selection split."""

    name = "topk"

    def __init__(self, *args: str):
        self.spec = ":".join(("topk", *args))
        if len(args) > 2:
            raise ConfigError(f"selector spec {self.spec!r}: write topk, topk:K, topk:K:uniform or topk:auto:uniform")
        self.k, self.uniform = _k_and_mode(args, self.spec)

    def select(self, ctx: SelectionContext) -> Selection:
        pool, source = _pool(ctx, self.k, self.uniform)
        ctx.say(f"selection {self.spec}: scoring {len(pool)} candidates ({source}) with the shared weights on the selection split")
        scores = ctx.score(pool)
        i = best(scores)
        return Selection(pool[i], len(pool), scores, i, {"drawn_from": source})


@register_selector("proxy")
class ProxySelector:
    """Best of K candidates by a zero-cost proxy (the scorers registry)."""

    name = "proxy"

    def __init__(self, scorer: str = "", k: str = "auto", mode: str = ""):
        self.spec = ":".join(a for a in ("proxy", scorer, k if k != "auto" or mode else "", mode) if a)
        if not scorer:
            raise ConfigError("selector 'proxy' needs a scorer: proxy:NAME[:K], e.g. proxy:synflow:16 (archgraph score --help lists them)")
        from archgraph.engine.scoring import get_scorer

        self.scorer = get_scorer(scorer)
        self.k, self.uniform = _k_and_mode([a for a in (k, mode) if a], self.spec)

    def select(self, ctx: SelectionContext) -> Selection:
        from archgraph.engine.scoring import ScoringContext

        ctx.needs_search(f"selector {self.spec!r}")
        pool, source = _pool(ctx, self.k, self.uniform)
        ctx.say(f"selection {self.spec}: scoring {len(pool)} candidates ({source}) with {self.scorer.name}")
        sctx = ScoringContext(ctx.net, ctx.strategy, ctx.data, ctx.cfg, ctx.device, ctx.strategy.graph)
        scores = [float(v) for v in self.scorer.score(sctx, pool)]
        i = best(scores, self.scorer.higher_is_better)
        return Selection(pool[i], len(pool), scores, i, {"drawn_from": source, "scorer": self.scorer.name, "higher_is_better": bool(self.scorer.higher_is_better)})
