"""Does every strategy land within its latency budget? (issue #30's CamVid check)

Runs each strategy that takes a budget with ``search.cost_limit=latency=<ms>@<HxW>`` on CamVid at a
reduced resolution and prints, per strategy, the derived architecture's predicted latency (the cost
model's table) and measured latency (the network compiled alone, timed at the deployment
resolution) against the limit, and whether each is within ``--tolerance`` (10%) of it.

    python benchmarks/cost_budget.py --root /data/camvid --limit 20ms@360x480 --epochs 6
    python benchmarks/cost_budget.py --smoke          # synthetic data, tiny graph, seconds (tests run this)

The latency table is measured once at the start (or read from ``--table``, built by
``archgraph latency``) and shared by every strategy's search.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

STRATEGIES = ("dcnas", "darts", "pc_darts", "p_darts", "proxylessnas", "spos", "rsws")
SMOKE = [
    "data.name=synthetic",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "data.num_samples=8",
    "data.val_limit=2",
    "space.layers=2",
    "space.base_channels=4",
    "search.epochs=2",
    "search.warmup_epochs=0",
    "search.steps_per_epoch=2",
    "search.bn_recalib_batches=1",
    "search.eval_every=0",
]
SMOKE_ONLY = {"spos": ["strategy.population=2", "strategy.generations=1", "strategy.select=1", "strategy.mutation=1", "strategy.crossover=1"]}  # the evolution's sizes are spos options only


def run(strategy: str, limit: str, overrides: list[str], out: Path, table: str | None) -> dict:
    from archgraph.config import load_config
    from archgraph.engine.search import run_search

    sets = [f"strategy.name={strategy}", f"search.cost_limit={limit}", *overrides, *([f"search.cost_table={table}"] if table else [])]
    final = run_search(load_config(None, sets), out / strategy, progress=False)
    return final["cost"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", help="CamVid folder (not needed with --smoke)")
    p.add_argument("--limit", default="20ms@360x480", help="the latency budget, VALUE[@HxW] (default 20ms@360x480)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--table", default=None, help="a latency table from `archgraph latency` (default: measured per search)")
    p.add_argument("--tolerance", type=float, default=0.10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/cost_budget")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], help="more config overrides")
    p.add_argument("--smoke", action="store_true", help="synthetic data, a tiny graph, a generous latency limit at 32x32")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.smoke:
        limit, base = "latency=1000ms@32x32", SMOKE
    else:
        if not args.root:
            p.error("--root (the CamVid folder) is needed unless --smoke")
        limit = f"latency={args.limit}"
        base = ["data.name=camvid", f"data.root={args.root}", "data.scale=0.5", f"search.epochs={args.epochs}", f"device={args.device}"]
    rows = []
    for s in [x.strip() for x in args.strategies.split(",") if x.strip()]:
        extra = SMOKE_ONLY.get(s, []) if args.smoke else []
        cost = run(s, limit, [*base, *extra, *args.overrides], out, args.table)
        v = cost["value"]
        rows.append(
            {
                "strategy": s,
                "limit_ms": v,
                "predicted_ms": cost["predicted"],
                "measured_ms": cost["measured"],
                "predicted_within": cost["predicted"] <= v * (1 + args.tolerance),
                "measured_within": cost["measured"] <= v * (1 + args.tolerance),
            }
        )
        print(
            f"{s:14s} limit {v:8.3f} ms  predicted {cost['predicted']:8.3f} ms  measured {cost['measured']:8.3f} ms  "
            f"within {args.tolerance:.0%}: predicted {'yes' if rows[-1]['predicted_within'] else 'NO'}, "
            f"measured {'yes' if rows[-1]['measured_within'] else 'NO'}",
            flush=True,
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "cost_budget.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
