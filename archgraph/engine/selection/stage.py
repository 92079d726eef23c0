"""Selection as a stage: run a selector after a search and describe what it did.

The search loop calls :func:`select_after_search` in its finish phase, after the strategy's own
end-of-search hook (SPOS's evolution), when ``search.select`` names a selector or the strategy names
its own (``default_select``: rsws's ``topk:N:uniform``). The picked architecture then becomes the
run's derived architecture exactly as an end hook's does (arch.yaml, scores.json, the last line of
history.jsonl, final.json), and final.json gets ``selection``: the spec, the number of candidates,
their scores, the index picked and the seconds spent. A strategy with an ``adopt(op_idx, input_idx)``
method is told the pick, so its own ``derive`` returns it afterwards (rsws).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from archgraph.config import Config
from archgraph.core.compile import CompiledNetwork
from archgraph.engine.selection.context import DEFAULT_K, SelectionContext, search_context
from archgraph.engine.selection.registry import Selection, get_selector
from archgraph.engine.smiou import SearchData

Candidate = tuple[dict[str, int], dict[str, list[int]]]


def selection_spec(cfg_select: str | None, strategy: Any) -> str | None:
    """The selector to run: ``search.select``, else the strategy's own ``default_select`` (None:
    the strategy's rule as it stands, no stage)."""
    return cfg_select or getattr(strategy, "default_select", None) or None


def record(selection: Selection, spec: str, seconds: float) -> dict[str, Any]:
    """final.json's ``selection`` entry (interface: selector, candidates, scores, picked, seconds)."""
    return {"selector": spec, "candidates": selection.candidates, "scores": [float(s) for s in selection.scores], "picked": selection.picked, "seconds": round(seconds, 3), **selection.detail}


def _adopt(strategy: Any, candidate: Candidate) -> None:
    adopt = getattr(strategy, "adopt", None)
    if callable(adopt):
        adopt(*candidate)


def select_after_search(
    spec: str, net: CompiledNetwork, strategy: Any, data: SearchData, cfg: Config, device: torch.device, weight_steps: int, arch_steps: int, say: Callable[[str], None] = lambda line: None
) -> tuple[Selection, dict[str, Any]]:
    """Run selector ``spec`` on a finished search's supernet; (the selection, final.json's entry)."""
    selector = get_selector(spec)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]), search_context(net, strategy, data, cfg, device, weight_steps, arch_steps, say) as ctx:
        selection = selector.select(ctx)
    seconds = time.perf_counter() - t0
    _adopt(strategy, selection.candidate)
    say(f"selection {selector.spec}: picked candidate {selection.picked + 1} of {selection.candidates} (score {selection.scores[selection.picked]:.4f}) in {seconds:.1f}s")
    return selection, record(selection, selector.spec, seconds)


def select_with_scorer(spec: str, net: CompiledNetwork, strategy: Any, score: Callable[[dict[str, int], dict[str, list[int]]], float], seed: int = 0, k: int = DEFAULT_K) -> Selection:
    """Run a selector that needs only a shared-weight scorer (argmax, topk) with ``score(ops, inputs)``,
    outside a search (the strategy check's miniature loop); the strategy adopts the pick."""
    ctx = SelectionContext(net, strategy, lambda cands: [float(score(*c)) for c in cands], seed, k)
    selection = get_selector(spec).select(ctx)
    _adopt(strategy, selection.candidate)
    return selection
