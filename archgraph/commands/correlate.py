"""``archgraph correlate``: supernet ranking vs stand-alone ranking (Pearson rho, Kendall tau)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


from archgraph.commands import add_config_args, rank_console

console = rank_console()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "correlate",
        help="correlation study: supernet mIoU vs stand-alone mIoU of N architectures (Pearson rho, Kendall tau, bootstrap CIs)",
        description="Search (or reuse a finished search with --search-dir), take N architectures (the derived one plus random "
        "ones spread over the supernet's quality range), score each with the supernet's shared weights (BN recalibrated) and by "
        "short stand-alone training with the config's train section, and report Pearson rho and Kendall tau with bootstrap "
        "confidence intervals. Writes OUT/correlation.json, correlation.md, correlation.png/.svg and archs/. Stand-alone runs "
        "are cached (--cache): the same architecture, recipe and seed is trained once, across strategies and commands.",
    )
    add_config_args(p)
    p.add_argument("--strategy", default=None, help="strategy to search with (sets strategy.name); with --search-dir it must match the search")
    p.add_argument("--archs", type=int, default=8, help="N: architectures in the study, the derived one included (default 8)")
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
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    p.set_defaults(func=cmd_correlate)


def _differs(a: dict[str, Any], b: dict[str, Any], ignore: tuple[str, ...]) -> str | None:
    """The first top-level config section that differs between two config dicts."""
    for key in sorted(set(a) | set(b)):
        if key not in ignore and a.get(key) != b.get(key):
            return key
    return None


def _auto_classes_filled(wanted: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """``saved`` with space.num_classes as ``wanted`` has it when ``wanted`` left it to the data (0):
    the search fills it in from the dataset, which is no difference in settings."""
    if wanted.get("space", {}).get("num_classes"):
        return saved
    return {**saved, "space": {**saved.get("space", {}), "num_classes": wanted.get("space", {}).get("num_classes")}}


def _search(args: argparse.Namespace, out: Path) -> Path:
    """The finished search folder to study: --search-dir, or OUT/search (searched, resumed or reused)."""
    import yaml

    from archgraph.config import load_config
    from archgraph.errors import ConfigError
    from archgraph.engine.search import CHECKPOINT, prepare_config, run_search

    overrides = list(args.overrides) + ([f"strategy.name={args.strategy}"] if args.strategy else [])
    if args.search_dir:
        run = Path(args.search_dir)
        saved = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else None
        if saved is not None and args.strategy and saved.get("strategy", {}).get("name") != args.strategy:
            raise ConfigError(f"--strategy {args.strategy} but {run} was searched with {saved.get('strategy', {}).get('name')!r}; drop --strategy or pick the matching search")
        return run
    run = out / "search"
    wanted = load_config(args.config, overrides)
    if (run / "final.json").is_file():
        saved = yaml.safe_load((run / "config.yaml").read_text()) or {}
        want = wanted.to_dict()
        got = _auto_classes_filled(want, load_config(None, [], base=saved).to_dict())
        section = _differs(want, got, ("train", "device"))
        if section is not None:
            raise ConfigError(f"{run} holds a finished search with another {section!r} section; use a new --out, or --search-dir {run} to study it as it is")
        console.print(f"reusing the finished search in {run}")
        return run
    resume = (run / CHECKPOINT).is_file()
    cfg = prepare_config(None, [], run, True) if resume else wanted
    console.print(("resuming" if resume else "searching") + f": strategy [bold]{cfg.strategy_name}[/] space [bold]{cfg.space_name}[/] -> {run}")
    run_search(cfg, run, resume=resume, progress=not args.no_progress)
    return run


def cmd_correlate(args: argparse.Namespace) -> int:
    from archgraph.config import load_config
    from archgraph.studies.correlate import StudyOptions, load_searched_supernet, run_study
    from archgraph.errors import ConfigError
    from archgraph.studies.runcache import default_cache_dir

    opts = StudyOptions(archs=args.archs, pool=args.pool, quick_batches=args.quick_batches, quick_val=args.quick_val,
                        sample_seed=args.sample_seed, train_seed=args.train_seed, resamples=args.bootstrap, level=args.level,
                        bootstrap_seed=args.bootstrap_seed)
    opts.check()  # before any search
    out = Path(args.out)
    run = _search(args, out)
    sup = load_searched_supernet(run)
    # The stand-alone recipe: the search's config, with train.* (only) changed by CONFIG/--set.
    train_cfg = load_config(args.config, list(args.overrides), base=sup.cfg.to_dict())
    section = _differs(sup.cfg.to_dict(), train_cfg.to_dict(), ("train", "device"))
    if section is not None:
        raise ConfigError(f"CONFIG/--set change the {section!r} section of the finished search {run}; only train.* may change here "
                          "(the supernet was trained and is scored with the search's data). Search again with the new settings instead")
    cache = Path(args.cache) if args.cache else default_cache_dir()
    result = run_study(sup, train_cfg, out, opts, cache, log=lambda m: console.print(m, soft_wrap=True, highlight=False), progress=not args.no_progress)
    rho, tau = result["pearson"], result["kendall"]

    def fmt(s: dict[str, Any]) -> str:
        if s["value"] is None:
            return "n/a"
        ci = s["ci"]
        return f"{s['value']:.3f}" + ("" if ci["low"] is None else f" [{ci['low']:.3f}, {ci['high']:.3f}]")

    console.print(f"{result['strategy']}: n={result['n']} Pearson rho {fmt(rho)}, Kendall tau {fmt(tau)} "
                  f"({int(round(opts.level * 100))}% bootstrap CI) -> {out / 'correlation.json'}, correlation.md, correlation.png")
    return 0
