"""``archgraph compare``: search with several strategies and seeds, train everything with one recipe,
compare against hand-designed (preset) and random baselines; one results table and one report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from archgraph.commands import add_config_args, rank_console

console = rank_console()


def register(sub: argparse._SubParsersAction) -> None:
    from archgraph.studies.compare import DEFAULT_STRATEGIES

    p = sub.add_parser(
        "compare",
        help="strategies head to head: search x seeds, stand-alone training with one recipe, preset and random baselines",
        description="For every strategy and seed: search (the config with strategy.name and seed set), then train the "
        "derived architecture stand-alone with the config's train section. Every baseline is trained the same way: "
        "'presets' (every preset of the config's space, e.g. DCSS's FCN, hourglass, DeepLabv3, HRNet; `archgraph spaces` lists them), 'preset:NAME', 'random:N' (N architectures drawn "
        "uniformly from the space, optionally within a FLOPs band). Writes OUT/results.json, results.md, plots "
        "(PNG+SVG), topologies/*.svg and report.html. Running the same command again resumes: finished runs are "
        "skipped, unfinished searches and trainings continue. Stand-alone trainings go through the run cache "
        "(--cache), so an architecture is trained once per recipe and seed. --jobs N or --executor ray run the searches and "
        "trainings in parallel, with the same results (docs/distributed.md). See docs/comparing.md.",
    )
    add_config_args(p)
    p.add_argument("--strategies", default=None, help=f"comma-separated strategies (default: {','.join(DEFAULT_STRATEGIES)})")
    p.add_argument("--seeds", default=None, help="a number of seeds from the config's seed on (3), or a list (0,1,2); default 1 (a study: its own)")
    p.add_argument("--baselines", default=None, help="comma-separated: presets | preset:NAME | random:N | none (default: presets; a study: its own)")
    p.add_argument(
        "--budget",
        choices=("official", "equal-steps", "equal-time"),
        default=None,
        help="search.budget for every run: official (each paper's ratios), equal-steps (the same weight and architecture steps for every strategy), equal-time (the same wall clock); part of the plan",
    )
    p.add_argument(
        "--selectors",
        default=None,
        metavar="SPEC,...",
        help="cross every strategy with each selector (search.select): entries like dcnas+topk:8; 'own' keeps the strategy's own rule, e.g. --selectors own,topk:8,proxy:synflow",
    )
    p.add_argument("--study", default=None, metavar="NAME", help="a named study of the DCNAS paper: dcnas-table5 (five strategies at L=8,10,12,14) or dcnas-table6 (its ablations); with --size")
    p.add_argument("--size", choices=("cpu", "gpu"), default="cpu", help="a study's size: cpu (every entry, tiny settings, minutes on 2 cores) or gpu (the paper's settings)")
    p.add_argument("--flops-band", type=float, default=None, metavar="FRACTION", help="random baselines: keep architectures with FLOPs within +-FRACTION of --flops-reference (e.g. 0.25)")
    p.add_argument(
        "--flops-reference",
        default=None,
        metavar="REF",
        help="a preset of the config's space (hrnet in DCSS; `archgraph spaces` lists them), a strategy of this compare (its first seed's architecture) or an arch.yaml",
    )
    p.add_argument(
        "--cost-limit",
        default=None,
        metavar="BUDGET[,BUDGET...]",
        help="run the study at each budget (search.cost_limit for every strategy and random baseline), e.g. "
        "flops=0.5G,flops=1G or latency=20ms@256x512,latency=40ms@256x512; two or more write pareto.png/.svg/.md "
        "(each strategy's front of T-mIoU against cost) in --out; see docs/costs.md",
    )
    p.add_argument(
        "--strategy-set",
        dest="strategy_options",
        metavar="NAME.KEY=VALUE",
        nargs="+",
        action="extend",
        default=[],
        help="options of one strategy of the comparison, e.g. --strategy-set spos.population=8 spos.generations=3",
    )
    p.add_argument("--cache", default=None, help="run cache folder for stand-alone trainings (default: $ARCHGRAPH_CACHE_DIR or ~/.cache/archgraph/standalone)")
    p.add_argument("--out", required=True, help="comparison folder (created if missing; an existing one is resumed)")
    p.add_argument("--resume", action="store_true", help="continue the comparison in --out (running the same command again does the same; this checks it exists)")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of the live table")
    add_executor_args(p)
    p.set_defaults(func=cmd_compare)


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """Where a study's jobs run (``archgraph compare`` and ``archgraph correlate``; docs/distributed.md)."""
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="run the jobs on N worker processes of this machine, one GPU each where there are GPUs, the CPU threads split between them otherwise (default: in this process, one after the other)",
    )
    from archgraph.studies.executors import EXECUTOR_REGISTRY

    others = [n for n in EXECUTOR_REGISTRY.declared() if n not in ("embedded", "processes", "ray")]  # installed plug-ins'
    p.add_argument(
        "--executor",
        default=None,
        metavar="NAME",
        help="where the jobs run: embedded (this process), processes (--jobs N workers), ray (one Ray task per job, on a "
        'local Ray or --ray-address; needs pip install "archgraph[ray]")'
        + (f", or an installed plug-in's: {', '.join(others)}" if others else "")
        + "; plug-ins add executors through the entry-point group archgraph.executors (docs/plugins.md)",
    )
    p.add_argument("--ray-address", default=None, metavar="ADDRESS", help="an existing Ray cluster (auto, or HOST:PORT of `ray start --head`); default: $RAY_ADDRESS, else a local Ray")
    p.add_argument("--retries", type=int, default=2, help="starts again of a job whose worker process died (--jobs, ray) or that hit an I/O error (ray); default 2")


def executor_from_args(args: argparse.Namespace):
    from archgraph.studies.executors import executor_spec

    return executor_spec(args.executor, args.jobs, args.ray_address, args.retries)


def cmd_compare(args: argparse.Namespace) -> int:
    from archgraph.studies.compare import DEFAULT_STRATEGIES, Plan, parse_baselines, parse_seeds, parse_strategies, parse_strategy_options, run_compare, table_rows, TABLE_HEAD
    from archgraph.config import load_config
    from archgraph.errors import ConfigError

    from archgraph.studies.compare import parse_selectors
    from archgraph.studies.compare.studies import get_study, study_variants

    study = get_study(args.study, args.size) if args.study else None
    if study is not None and (args.strategies or args.selectors):
        raise ConfigError(f"--study {args.study} names its own entries; drop --strategies/--selectors, or run a plain compare with them")
    overrides = [*(study.overrides[args.size] if study else []), *args.overrides, *([f"search.budget={args.budget}"] if args.budget else [])]
    base = load_config(args.config, overrides)
    if args.flops_band is not None and args.flops_band <= 0:
        raise ConfigError(f"--flops-band {args.flops_band}: give a positive fraction, e.g. 0.25 for +-25%")
    seeds = args.seeds or (study.seeds[args.size] if study else "1")
    baselines = args.baselines or (study.baselines[args.size] if study else "presets")
    if study is not None:
        variants = study_variants(study, args.size, base.data.scale)
        for v in variants.values():
            parse_strategies(v["strategy"])  # a study's strategy that is not installed: named now
    else:
        strategies = parse_strategies(args.strategies or ",".join(DEFAULT_STRATEGIES))
        variants = parse_selectors(args.selectors, strategies)
    plan = Plan(
        base=base,
        strategies=list(variants) if variants else strategies,
        seeds=parse_seeds(seeds, base.seed),
        baselines=parse_baselines(baselines, base.space_name),
        flops_band=args.flops_band,
        flops_reference=args.flops_reference,
        cache_dir=Path(args.cache) if args.cache else None,
        variants={k: v for k, v in variants.items() if k != v["strategy"] or v.get("set") or v.get("search_set") or v.get("select")},
        study={"name": study.name, "size": args.size, "estimate": study.estimate[args.size]} if study else None,
    )
    plan.strategy_options = parse_strategy_options(args.strategy_options, list(dict.fromkeys([*plan.strategies, *map(plan.strategy_of, plan.strategies)])))
    if plan.flops_band is not None and not any(b.kind == "random" for b in plan.baselines):
        raise ConfigError("--flops-band applies to random baselines; add random:N to --baselines")
    if plan.flops_reference:
        from archgraph.studies.compare.baselines import reference_kind

        reference_kind(plan.flops_reference, plan, base.space_name)  # a mistyped reference: refused before any work
    out = Path(args.out)
    executor = executor_from_args(args)  # a bad flag, or Ray missing: refused before any work
    from archgraph.runfolder import check_output_folder

    check_output_folder(out, kind="compare")  # a file, or a folder that cannot be written: refused before any work
    if args.resume and not (out / "compare.json").is_file():
        raise ConfigError(f"--resume: {out} holds no comparison (no compare.json); run without --resume to start one")
    console.print(f"comparing {', '.join(plan.strategies)} x seeds {plan.seeds}{' + ' + ', '.join(b.entry for b in plan.baselines) if plan.baselines else ''} -> {out}")
    log = lambda m: console.print(m, highlight=False, markup=False)
    from archgraph.studies.compare.stats import significance_floor_note

    randoms = sum(b.count for b in plan.baselines if b.kind == "random")
    note = significance_floor_note(len(plan.seeds), randoms, len(plan.strategies))
    if note:
        print(note, file=sys.stderr)
    if args.cost_limit:
        from archgraph.studies.compare.pareto import BUDGETS, budget_slug, parse_cost_limits, run_budgets

        specs = parse_cost_limits(args.cost_limit)
        if len(specs) > 1:
            by_budget = run_budgets(plan, out, specs, run_compare, progress=not args.no_progress, log=log, executor=executor)
            for spec, _ in by_budget:
                console.print(f"{spec}: {out / BUDGETS / budget_slug(spec) / 'results.md'}")
            console.print(f"wrote {out / 'pareto.md'}, {out / 'pareto.png'} and {out / 'pareto.svg'}")
            return 0
        from archgraph.studies.compare.pareto import budget_plan

        plan = budget_plan(plan, specs[0])
    results = run_compare(plan, out, progress=not args.no_progress, log=log, executor=executor)
    from rich.table import Table

    table = Table(title=f"results ({out / 'results.md'})")
    for h in TABLE_HEAD:
        table.add_column(h)
    for row in table_rows(results):
        table.add_row(*row)
    console.print(table)
    console.print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'checklist.md'} and {out / 'report.html'}")
    failed = sum(r.get("status") == "failed" for e in results["entries"] for r in e["runs"])
    if failed:
        for e in results["entries"]:
            for r in e["runs"]:
                if r.get("status") == "failed":
                    console.print(f"[red]failed[/] {e['name']} seed {r['seed']}: {r.get('error')}", highlight=False, soft_wrap=True)
        console.print(f"[red]{failed} run(s) failed[/]; fix the cause and run the same command again to retry them")
        return 1
    return 0
