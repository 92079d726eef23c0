"""``archgraph correlate``: supernet and scorer rankings vs stand-alone ranking (Pearson, Spearman, Kendall, top-20% Kendall)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


from archgraph.io import load_yaml_file
from archgraph.commands import add_config_args, rank_console

console = rank_console()
ARCHS_WITH_WORKERS = 40  # the default N where trainings run on workers (--jobs >= 2, ray): enough for top-20% Kendall over 8
ARCHS_IN_PROCESS = 8  # one after the other in this process: 8 short trainings


def default_archs(args: argparse.Namespace) -> int:
    """--archs when not given: 40 when the study trains on several workers, else 8 (docs/correlation.md)."""
    workers = (args.jobs or 0) >= 2 or args.executor == "ray"
    return ARCHS_WITH_WORKERS if workers else ARCHS_IN_PROCESS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "correlate",
        help="correlation study: supernet and every scorer vs stand-alone mIoU of N architectures (Pearson, Spearman, Kendall, top-20%% Kendall, bootstrap CIs)",  # %% : argparse formats help strings
        description="Search (or reuse a finished search with --search-dir), take N architectures (the derived one plus random "
        "ones spread over the supernet's quality range), score each with the supernet's shared weights (BN recalibrated, "
        "selection split) and every other scorer (zero-cost proxies, params, flops; --scorers), train each stand-alone with the "
        "config's train section, and report Pearson, Spearman, Kendall and top-20% Kendall per scorer with bootstrap "
        "confidence intervals. Writes OUT/correlation.json, correlation.md, correlation.png/.svg and archs/. Stand-alone runs "
        "are cached (--cache): the same architecture, recipe and seed is trained once, across strategies and commands. "
        "--jobs N or --executor ray train the architectures in parallel, with the same results (docs/distributed.md).",
    )
    add_config_args(p)
    p.add_argument("--strategy", default=None, help="strategy to search with (sets strategy.name); with --search-dir it must match the search")
    p.add_argument(
        "--archs",
        type=int,
        default=None,
        help=f"N: architectures in the study, the derived one included (default {ARCHS_WITH_WORKERS} with --jobs >= 2 or --executor ray, {ARCHS_IN_PROCESS} in this process)",
    )
    p.add_argument(
        "--scorers", default=None, metavar="A,B", help="scorers correlated with stand-alone mIoU besides the supernet (default: every registered scorer but train; `archgraph score --list`)"
    )
    p.add_argument("--out", required=True, help="folder to write (the search goes to OUT/search unless --search-dir)")
    p.add_argument("--search-dir", default=None, help="reuse this finished search folder instead of searching; --set may then change only train.*")
    p.add_argument("--cache", default=None, help="stand-alone run cache (default: $ARCHGRAPH_CACHE_DIR or ~/.cache/archgraph/standalone)")
    p.add_argument("--pool", type=int, default=0, help="random architectures pre-scored to pick from (default: max(4 N, 16))")
    p.add_argument("--quick-batches", type=int, default=1, help="BN-recalibration batches of the cheap pre-score (default 1)")
    p.add_argument("--quick-val", type=int, default=8, help="validation images of the cheap pre-score (default 8; 0 = all)")
    p.add_argument("--sample-seed", type=int, default=0, help="first seed of the random pool (default 0: the same pool for every strategy)")
    p.add_argument("--train-seed", type=int, default=None, help="stand-alone training seed (default: the config's seed)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the confidence intervals (default 1000)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars or live table (for logs)")
    from archgraph.commands.compare import add_executor_args

    add_executor_args(p)
    p.set_defaults(func=cmd_correlate)


def _differs(a: dict[str, Any], b: dict[str, Any], ignore: tuple[str, ...]) -> str | None:
    from archgraph.studies.correlate.jobs import first_difference

    return first_difference(a, b, ignore)


def _auto_classes_filled(wanted: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """``saved`` with space.num_classes as ``wanted`` has it when ``wanted`` left it to the data (0):
    the search fills it in from the dataset, which is no difference in settings."""
    if wanted.get("space", {}).get("num_classes"):
        return saved
    return {**saved, "space": {**saved.get("space", {}), "num_classes": wanted.get("space", {}).get("num_classes")}}


def _search(args: argparse.Namespace, out: Path):
    """The search folder to study and, when it must still run, its config and whether it resumes:
    --search-dir or a finished OUT/search (None), else OUT/search to search or resume (a job)."""
    from archgraph.config import load_config
    from archgraph.errors import ConfigError
    from archgraph.engine.checkpoint import has_checkpoint
    from archgraph.engine.search import CHECKPOINT, prepare_config

    overrides = list(args.overrides) + ([f"strategy.name={args.strategy}"] if args.strategy else [])
    if args.search_dir:
        run = Path(args.search_dir)
        saved = load_yaml_file(run / "config.yaml") if (run / "config.yaml").is_file() else None
        if saved is not None and args.strategy and saved.get("strategy", {}).get("name") != args.strategy:
            raise ConfigError(f"--strategy {args.strategy} but {run} was searched with {saved.get('strategy', {}).get('name')!r}; drop --strategy or pick the matching search")
        return run, None, False
    run = out / "search"
    wanted = load_config(args.config, overrides)
    if (run / "final.json").is_file():
        saved = load_yaml_file(run / "config.yaml") or {}
        want = wanted.to_dict()
        got = _auto_classes_filled(want, load_config(None, [], base=saved).to_dict())
        section = _differs(want, got, ("train", "device"))
        if section is not None:
            raise ConfigError(f"{run} holds a finished search with another {section!r} section; use a new --out, or --search-dir {run} to study it as it is")
        console.print(f"reusing the finished search in {run}")
        return run, None, False
    resume = has_checkpoint(run / CHECKPOINT)  # last.prev counts: a save killed between its renames
    cfg = prepare_config(None, [], run, True) if resume else wanted
    if resume:  # an interrupted search continues only with the settings asked for now (--strategy included)
        want = wanted.to_dict()
        section = _differs(want, _auto_classes_filled(want, cfg.to_dict()), ("train", "device"))
        if section is not None:
            raise ConfigError(
                f"{run} holds an unfinished search with another {section!r} section (strategy {cfg.strategy_name!r}) than the one asked for; "
                f"run the same command as before to finish it, or use a new --out"
            )
    console.print(("resuming" if resume else "searching") + f": strategy [bold]{cfg.strategy_name}[/] space [bold]{cfg.space_name}[/] -> {run}")
    return run, cfg, resume


def _check_finished_search(run: Path, args: argparse.Namespace) -> None:
    """A finished search is checked here, before any job: its folder, and that CONFIG/--set change only train.*."""
    from archgraph.config import config_from_dict
    from archgraph.studies.correlate.jobs import standalone_recipe
    from archgraph.studies.correlate.supernet import require_finished_search

    require_finished_search(run)
    standalone_recipe(config_from_dict(load_yaml_file(run / "config.yaml") or {}), args.config, tuple(args.overrides), run)


def cmd_correlate(args: argparse.Namespace) -> int:
    from archgraph.commands.compare import executor_from_args
    from archgraph.studies.correlate import StudyOptions
    from archgraph.studies.correlate.jobs import StudyJobs
    from archgraph.studies.runcache import default_cache_dir

    scorers = tuple(s.strip() for s in args.scorers.split(",") if s.strip()) if args.scorers else ()
    opts = StudyOptions(
        archs=args.archs if args.archs is not None else default_archs(args),
        pool=args.pool,
        scorers=scorers,
        quick_batches=args.quick_batches,
        quick_val=args.quick_val,
        sample_seed=args.sample_seed,
        train_seed=args.train_seed,
        resamples=args.bootstrap,
        level=args.level,
        bootstrap_seed=args.bootstrap_seed,
    )
    opts.check()  # before any search
    executor = executor_from_args(args)
    out = Path(args.out)
    run, search_cfg, resume = _search(args, out)
    if search_cfg is None:
        _check_finished_search(run, args)
    cache = Path(args.cache) if args.cache else default_cache_dir()
    embedded = executor.kind == "embedded"
    study = StudyJobs(run, search_cfg, resume, args.config, tuple(args.overrides), cache, progress=embedded and not args.no_progress)
    result = _run_with_table(study, out, opts, executor, show=not embedded and not args.no_progress, log=not embedded)
    rho, tau = result["pearson"], result["kendall"]

    def fmt(s: dict[str, Any]) -> str:
        if s["value"] is None:
            return "n/a"
        ci = s["ci"]
        return f"{s['value']:.3f}" + ("" if ci["low"] is None else f" [{ci['low']:.3f}, {ci['high']:.3f}]")

    console.print(
        f"{result['strategy']}: n={result['n']} Pearson rho {fmt(rho)}, Kendall tau {fmt(tau)} "
        f"({int(round(opts.level * 100))}% bootstrap CI) -> {out / 'correlation.json'}, correlation.md, correlation.png"
    )
    for name, stats in result.get("scorers", {}).items():
        console.print(f"  {name:>10}: Spearman {fmt(stats['spearman'])}, Kendall {fmt(stats['kendall'])}, top-20% Kendall {fmt(stats['top_kendall'])}", highlight=False)
    return 0


def _run_with_table(study, out: Path, opts, executor, show: bool, log: bool) -> dict[str, Any]:
    """The study's jobs; with workers, a live table of the jobs (``show``) or a line per change (``log``).

    In this process the jobs print their own lines and progress bars, as the study always did."""
    from archgraph.studies.correlate.jobs import run_correlate
    from archgraph.studies.executors import JobTable

    def line(job) -> None:
        if job.state in ("running", "done", "failed", "cached"):
            where = f" ({job.host})" if job.host and job.state == "running" else ""
            console.print(f"{job.label}: {job.state}{where}" + (f": {job.error}" if job.error else ""), highlight=False, markup=False, soft_wrap=True)

    if not show:
        return run_correlate(study, out, opts, executor, notify=line if log else None)
    from rich.live import Live

    table = JobTable(f"archgraph correlate -> {out}")
    with Live(table, console=console, refresh_per_second=1, transient=False):
        return run_correlate(study, out, opts, executor, notify=table.update)
