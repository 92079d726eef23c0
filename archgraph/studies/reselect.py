"""Selection on a finished search: run any selector on a search folder's trained supernet again.

Selection is a stage of its own (docs/strategies.md, "Selection"): a search ends in a trained
supernet, and which architecture to take from it is a separate decision. Running that decision
again on the saved supernet lets a user (or a benchmark) cross one search with several selectors
without paying for the search again. The result is what ``search.select=SPEC`` would have given at
the end of the same search: the supernet, its weights, the selection split and the search's own
budget (the weight and architecture steps in final.json's ``spent``, which set ``topk``'s default K)
are the same, and the selector's random draws are seeded from the config's seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import networkx as nx

from archgraph.io import read_json


def _search_steps(run_dir: Path) -> tuple[int, int]:
    """(weight steps, architecture steps) the search spent, from final.json."""
    final = read_json(run_dir / "final.json")
    spent = final.get("spent") or {}
    weight = int(spent.get("weight_steps", 0))
    arch = int(spent.get("arch_steps", final.get("arch_steps_total", 0) or 0))
    return weight, arch


def select_from_run(run_dir: str | Path, spec: str, device: str | None = None, say: Callable[[str], None] = lambda line: None) -> tuple[nx.DiGraph, tuple[Any, Any], dict[str, Any]]:
    """Run selector ``spec`` on the finished search in ``run_dir``.

    Returns the picked architecture (a derived graph), its one-hot scores (the form scores.json
    holds) and the selection record (final.json's ``selection`` layout plus the run it came from).
    """
    from archgraph.core.decode import decode
    from archgraph.engine.scoring import one_hot_scores
    from archgraph.engine.selection import get_selector, select_after_search
    from archgraph.studies.correlate.supernet import load_searched_supernet

    get_selector(spec)  # an unknown or malformed spec is refused before the supernet is loaded
    run = Path(run_dir)
    sup = load_searched_supernet(run, device)
    weight_steps, arch_steps = _search_steps(run)
    selection, record = select_after_search(spec, sup.net, sup.strategy, sup.data, sup.cfg, sup.device, weight_steps, arch_steps, say=say)
    scores = one_hot_scores(sup.net.choices, *selection.candidate)
    derived: nx.DiGraph = decode(sup.strategy.graph, *scores)
    record = {**record, "run": str(run), "strategy": sup.cfg.strategy_name, "seed": sup.cfg.seed}
    return derived, scores, record
