"""`archgraph check-strategy`: the strategy contract checked on tiny sizes (archgraph.testing)."""

from __future__ import annotations

import argparse
import sys
import time

from archgraph.commands import add_set_option
from archgraph.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    from archgraph.testing import CHECKS

    p = sub.add_parser(
        "check-strategy",
        help="check a registered strategy on tiny sizes: subnet mode == derived network, gradients, evaluation, exact resume, a planted signal",
        description="Runs the checks of archgraph.testing on strategy NAME and space --space, at tiny sizes (the space's "
        "layers=2, base_channels=4 where it has them; the strategy's checks.options). One line per check: PASS, "
        "FAIL or SKIP with the reason. Exit status 1 when a check fails. See docs/plugins.md for the contract.",
    )
    p.add_argument("name", help="the strategy (see `archgraph strategies`)")
    p.add_argument("--space", default="dcss", help="the space to check it on (default: dcss)")
    add_set_option(p)
    p.add_argument("--checks", default=",".join(CHECKS), help=f"comma-separated subset of: {', '.join(CHECKS)} (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the supernet, the batches and the searches")
    p.add_argument("--planted-seeds", type=int, default=3, help="seeds of the planted-signal run (found in all but a third of them; default 3)")
    p.set_defaults(func=cmd_check_strategy)


def cmd_check_strategy(args: argparse.Namespace) -> int:
    from archgraph.config import parse_overrides
    from archgraph.testing import check_strategy

    given = parse_overrides(args.overrides)
    other = sorted(set(given) - {"space", "strategy"})
    if other:
        raise ConfigError(f"--set {other[0]}.*: check-strategy takes space.KEY=VALUE and strategy.KEY=VALUE only (the run sizes are its own)")
    for section in ("space", "strategy"):
        if "name" in given.get(section, {}):
            raise ConfigError(f"--set {section}.name: give the {'space with --space' if section == 'space' else 'strategy as NAME'}")
    checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    if args.planted_seeds < 1:
        raise ConfigError(f"--planted-seeds must be at least 1, got {args.planted_seeds}")
    t0 = time.perf_counter()
    report = check_strategy(args.name, args.space, given.get("space"), given.get("strategy"), checks, args.seed, args.planted_seeds, echo=lambda line: print(line, flush=True))
    print(f"{report.summary()} ({time.perf_counter() - t0:.0f}s)", flush=True)
    if not report.ok:
        print(f"failed: {', '.join(r.check for r in report.failed())}; docs/plugins.md says what each check holds a strategy to", file=sys.stderr)
        return 1
    return 0
