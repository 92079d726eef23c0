"""What a comparison refuses before its first run: a search whose budget cannot work.

A strategy whose schedule takes no architecture step (ProxylessNAS's ``arch_every=5`` with 2 steps per
epoch, a warm-up as long as the search) would otherwise fail in the middle of the study, shown as one
``ConfigError`` row among finished ones, after hours of the other runs. :func:`check_budgets` asks every
strategy entry of the plan, with the config its search will get, through the search's own check
(:func:`archgraph.engine.search.check_search_budget`, the strategies' ``planned_arch_steps`` and
``arch_schedule_note``), and refuses the plan with every problem at once.
"""

from __future__ import annotations

import json

from archgraph.errors import ArchgraphError, ConfigError
from archgraph.studies.compare.plan import Plan, run_config


def check_budgets(plan: Plan) -> None:
    """Raise one :class:`ConfigError` naming every strategy entry whose search would take no
    architecture step (or whose config a search refuses), before anything runs. The search data is
    built once per distinct data setting (first seed: the split sizes do not depend on the seed)."""
    from archgraph.engine.search import check_search_budget
    from archgraph.engine.smiou import build_search_data

    data_by_setting: dict[str, object] = {}
    problems: list[str] = []
    for entry in plan.strategies:
        cfg = run_config(plan.base, plan.seeds[0], entry, plan.strategy_options, plan.variants.get(entry))
        key = json.dumps([cfg.data.__dict__, cfg.search.split_ratio, getattr(cfg.search, "select_split", None), getattr(cfg.search, "holdout_fraction", None)], sort_keys=True, default=str)
        try:
            if key not in data_by_setting:
                data_by_setting[key] = build_search_data(cfg)
            check_search_budget(cfg, data_by_setting[key])
        except ArchgraphError as exc:
            problems.append(f"{entry}: {exc}")
    if problems:
        raise ConfigError(
            f"{len(problems)} of {len(plan.strategies)} searches of this comparison cannot work as planned, "
            "so nothing was run: " + " | ".join(problems) + " (fix them with --set, or --strategy-set NAME.key=value for one strategy)"
        )
