"""What a selector may use, and the default selection budget.

:class:`SelectionContext` carries the trained supernet and its strategy, a batch scorer with the
shared weights on the selection split (``score``), the default number of candidates (``auto_k``)
and, when selection follows a real search, the search's data and config (perturb's supernet probe
and fine-tune, the proxies' :class:`~archgraph.engine.scoring.ScoringContext`). The search loop
builds it with :func:`search_context`; the strategy check's miniature loop (archgraph.testing)
builds one around its own scorer.

**The budget rule** (:func:`auto_k`). A search step costs at least three forward passes' worth of
the supernet (forward + backward) for the weights, and again for an architecture step; scoring a
candidate costs its recalibration batches plus one pass over the selection split, through a subnet,
which is never larger than the supernet. So ``K = 3 x (weight steps + architecture steps) //
(forward passes per candidate)``, capped at :data:`TOPK_MAX`, keeps selection's forward passes
within the search's. More candidates find better shared-weight scores but the winner of many noisy
scores is chosen partly for its noise (docs/strategies.md, "Selection", has the trade-off).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from archgraph.config import Config
from archgraph.core.choices import ChoicePoints
from archgraph.core.compile import CompiledNetwork
from archgraph.engine.selection.splitcache import SplitCache, SubnetScorer
from archgraph.engine.smiou import SearchData

Candidate = tuple[dict[str, int], dict[str, list[int]]]
TOPK_MAX = 24  # the largest default K (the trial drew 24); an explicit topk:K may go beyond
DEFAULT_K = 8  # K when nothing is known about the search's budget (the strategy check's miniature loop)


def auto_k(weight_steps: int, arch_steps: int, passes_per_candidate: int) -> int:
    """The default K: selection's forward passes at most the search's (module docstring), 1 to TOPK_MAX."""
    budget = 3 * (max(weight_steps, 0) + max(arch_steps, 0))
    return max(1, min(TOPK_MAX, budget // max(passes_per_candidate, 1)))


@dataclass
class SelectionContext:
    """Everything a selector may use (module docstring). ``score`` is higher-is-better."""

    net: CompiledNetwork
    strategy: Any
    score: Callable[[Sequence[Candidate]], list[float]]
    seed: int = 0
    auto_k: int = DEFAULT_K
    data: SearchData | None = None
    cfg: Config | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cache: SplitCache | None = None
    scorer: SubnetScorer | None = None
    say: Callable[[str], None] = lambda line: None

    @property
    def choices(self) -> ChoicePoints:
        return self.net.choices

    def needs_search(self, what: str) -> None:
        """Refuse a selector that needs the search's data outside a search (e.g. in a miniature loop)."""
        from archgraph.errors import ConfigError

        if self.data is None or self.cfg is None or self.cache is None:
            raise ConfigError(f"{what} needs the search's data and config; run it as search.select after a search")


@contextlib.contextmanager
def search_context(
    net: CompiledNetwork, strategy: Any, data: SearchData, cfg: Config, device: torch.device, weight_steps: int, arch_steps: int, say: Callable[[str], None] = lambda line: None
) -> Iterator[SelectionContext]:
    """The context after a search: the selection split cached once, the supernet's BN state saved
    for the whole selection (restored on exit), K from the search's steps."""
    cache = SplitCache.build(data, cfg, device)
    with SubnetScorer(net, strategy.relaxation, cache) as scorer:
        yield SelectionContext(net, strategy, scorer.score_all, cfg.seed, auto_k(weight_steps, arch_steps, cache.forward_passes), data, cfg, device, cache, scorer, say)
