"""Selection: from a trained supernet to one architecture, as a stage of its own after any search.

Modules, one job each: ``registry`` (selectors by spec, plug-ins through the ``archgraph.selectors``
entry-point group), ``context`` (what a selector may use; the default budget), ``splitcache``
(the selection split loaded once; fast shared-weight scoring), ``candidates`` (drawing
architectures), ``selectors`` (argmax, topk, proxy), ``perturb`` (DARTS-PT's projection) and
``stage`` (running a selector after a search and recording it). docs/strategies.md, "Selection".
"""

from archgraph.engine.selection.context import DEFAULT_K, TOPK_MAX, SelectionContext, auto_k, search_context
from archgraph.engine.selection.registry import ENTRY_POINT_GROUP, Selection, Selector, get_selector, register_selector, selector_names
from archgraph.engine.selection.stage import record, select_after_search, select_with_scorer, selection_spec

__all__ = [
    "DEFAULT_K",
    "ENTRY_POINT_GROUP",
    "TOPK_MAX",
    "Selection",
    "SelectionContext",
    "Selector",
    "auto_k",
    "get_selector",
    "record",
    "register_selector",
    "search_context",
    "select_after_search",
    "select_with_scorer",
    "selection_spec",
    "selector_names",
]
