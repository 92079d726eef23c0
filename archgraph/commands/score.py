"""``archgraph score``: score architectures with a finished search's supernet and zero-cost proxies,
without training them."""

from __future__ import annotations

import argparse
import hashlib
import math
from pathlib import Path
from typing import Any

from archgraph.commands import rank_console

console = rank_console()
SCORED = "scored"  # RUN/scored/: one JSON and one Markdown file per set of settings, archs/ for the architectures
RESULT_VERSION = 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score architectures with a finished search's supernet (shared weights) and zero-cost proxies, no training",
        description="Load the trained supernet of a finished search (RUN: an `archgraph search` folder) and score architectures "
        "without training them: N random architectures of its space (seeded) or the arch.yaml files given. Each scorer "
        "(--scorers) sees the whole batch: 'supernet' (mIoU with the shared weights on the selection split, BN recalibrated on "
        "trainA), zero-cost proxies of the architecture compiled stand-alone at initialisation (synflow, naswot, grad_norm, "
        "snip, jacov), the naive baselines params and flops, and 'train' (stand-alone training with the config's train "
        "recipe: slow). Writes RUN/scored/<settings>.json and .md (named by the architectures, seed and scorers; an existing "
        "one is kept unless --force) and the architectures to RUN/scored/archs/, and prints a table. docs/scoring.md.",
    )
    p.add_argument("run_dir", metavar="RUN", nargs="?", default=None, help="a finished `archgraph search` folder (config.yaml, checkpoint.pt, final.json)")
    p.add_argument("--archs", nargs="+", default=["8"], metavar="N|FILE", help="a number N of random architectures of the supernet's space (default 8), or arch.yaml files")
    p.add_argument("--scorers", default=None, metavar="A,B", help="comma-separated scorers (default: every registered scorer but 'train'); `archgraph score --list` names them")
    p.add_argument("--seed", type=int, default=0, help="first seed of the random architectures (seeds SEED, SEED+1, ...; default 0)")
    p.add_argument("--device", default=None, help="device to score on (default: the search's)")
    p.add_argument("--force", action="store_true", help="replace an existing result of the same settings")
    p.add_argument("--list", action="store_true", help="list the scorers and exit (RUN is then ignored)")
    p.set_defaults(func=cmd_score)


def scorer_table() -> list[tuple[str, str, str, str]]:
    """(name, direction, needs a trained supernet, what it is) for every registered scorer."""
    from archgraph.engine.scoring import get_scorer, scorer_doc, scorer_names

    rows = []
    for name in scorer_names():
        s = get_scorer(name)
        rows.append((name, "higher" if s.higher_is_better else "lower", "yes" if s.needs_trained_supernet else "no", scorer_doc(name)))
    return rows


def default_scorers() -> list[str]:
    from archgraph.engine.scoring import scorer_names

    names = [n for n in scorer_names() if n != "train"]
    return sorted(names, key=lambda n: (n != "supernet", n))  # the supernet first, then the proxies


def _archs_spec(values: list[str]) -> int | list[Path]:
    from archgraph.errors import ConfigError

    if len(values) == 1 and values[0].strip().lstrip("-").isdigit():
        n = int(values[0])
        if n < 1:
            raise ConfigError(f"--archs {n}: give at least 1 architecture, e.g. --archs 8")
        return n
    return [Path(v) for v in values]


def output_stem(archs: int | list[str], seed: int, scorers: list[str]) -> str:
    """The result's file name, from its settings: ``random8-seed0__supernet+synflow`` or
    ``files-<hash of the architectures>__...``."""
    what = f"random{archs}-seed{seed}" if isinstance(archs, int) else "files-" + hashlib.sha1("\n".join(sorted(archs)).encode()).hexdigest()[:10]
    return f"{what}__" + "+".join(s.replace(":", "-") for s in scorers)


def cmd_score(args: argparse.Namespace) -> int:
    from archgraph.engine.scoring import parse_scorers
    from archgraph.errors import ConfigError
    from archgraph.runfolder import check_output_folder
    from archgraph.studies.correlate.candidates import sample_pool
    from archgraph.studies.correlate.scores import architecture_candidates, run_scorers, scoring_context
    from archgraph.studies.correlate.supernet import load_searched_supernet

    if args.list:
        _print_scorers()
        return 0
    if args.run_dir is None:
        raise ConfigError("give RUN, a finished `archgraph search` folder, e.g. archgraph score runs/demo --archs 8")
    specs = [s.strip() for s in (args.scorers.split(",") if args.scorers else default_scorers()) if s.strip()]
    scorers = parse_scorers(specs)  # unknown names refused before the supernet is loaded
    archs = _archs_spec(args.archs)
    run = Path(args.run_dir)
    folder = run / SCORED
    check_output_folder(folder, "RUN/scored")
    sup = load_searched_supernet(run, args.device)
    if isinstance(archs, int):
        cands = sample_pool(sup, archs, args.seed, set())
        if len(cands) < archs:
            raise ConfigError(f"the space of {run} has only {len(cands)} distinct architectures within {4 * archs} draws; lower --archs to {len(cands)}")
        stem = output_stem(archs, args.seed, specs)
    else:
        cands = architecture_candidates(sup, archs)
        stem = output_stem([c.hash for c in cands], args.seed, specs)
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    if json_path.exists() and not args.force:
        raise ConfigError(f"{json_path} exists (the same architectures and scorers); add --force to replace it, or change --seed, --archs or --scorers")
    results = run_scorers(scoring_context(sup), [(c.op_idx, c.input_idx) for c in cands], scorers, log=lambda m: console.print(m, highlight=False))
    record = _record(sup, cands, results, archs, args.seed)
    _write(folder, json_path, md_path, record, cands)
    _print_table(record)
    console.print(f"-> {json_path}, {md_path.name}")
    return 0


def _record(sup, cands, results, archs, seed: int) -> dict[str, Any]:
    from archgraph.studies.correlate.scores import ScorerResult

    def clean(v: float) -> float | None:
        return v if math.isfinite(v) else None

    by_scorer: list[ScorerResult] = results
    return {
        "version": RESULT_VERSION,
        "search_dir": str(sup.run_dir.resolve()),
        "strategy": sup.cfg.strategy_name,
        "space": sup.cfg.space_name,
        "select_split": getattr(sup.cfg.search, "select_split", None),
        "archs_from": "random" if isinstance(archs, int) else "files",
        "seed": seed if isinstance(archs, int) else None,
        "scorers": [{"name": r.name, "higher_is_better": r.higher_is_better, "seconds": r.seconds} for r in by_scorer],
        "archs": [
            {"arch_hash": c.hash, "source": c.source, "sample_seed": c.sample_seed, "file": f"archs/{c.hash}.yaml", "scores": {r.name: clean(r.values[i]) for r in by_scorer}}
            for i, c in enumerate(cands)
        ],
    }


def _write(folder: Path, json_path: Path, md_path: Path, record: dict[str, Any], cands) -> None:
    from archgraph.core.graph import save
    from archgraph.io import atomic_write_json, atomic_write_text

    for c in cands:
        target = folder / "archs" / f"{c.hash}.yaml"
        if not target.exists():
            save(c.graph, target)
    atomic_write_json(json_path, record)
    atomic_write_text(md_path, markdown(record))


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4f}" if 1e-3 <= abs(v) < 1e4 or v == 0 else f"{v:.4g}"


def markdown(record: dict[str, Any]) -> str:
    """The result as a Markdown table, one row per architecture, one column per scorer."""
    names = [s["name"] for s in record["scorers"]]
    lines = [
        f"# Scores: {record['strategy']} on {record['space']}",
        "",
        f"Search: `{record['search_dir']}`; {len(record['archs'])} architectures ({record['archs_from']}" + (f", seeds from {record['seed']}" if record["seed"] is not None else "") + ").",
        "",
        "| scorer | better | seconds |",
        "|---|---|---|",
        *[f"| {s['name']} | {'higher' if s['higher_is_better'] else 'lower'} | {s['seconds']:.2f} |" for s in record["scorers"]],
        "",
        "| # | architecture | source | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for i, a in enumerate(record["archs"], 1):
        lines.append(f"| {i} | [`{a['arch_hash']}`]({a['file']}) | {a['source']} | " + " | ".join(_fmt(a["scores"][n]) for n in names) + " |")
    return "\n".join(lines) + "\n"


def _print_table(record: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    names = [s["name"] for s in record["scorers"]]
    table = Table(title=f"{record['strategy']}: {len(record['archs'])} architectures", box=box.SIMPLE, padding=(0, 1))
    for col in ["#", "arch", *names]:
        table.add_column(col, justify="left" if col == "arch" else "right", no_wrap=True)
    for i, a in enumerate(record["archs"], 1):
        table.add_row(str(i), a["arch_hash"][:8], *[f"{v:.3g}" if v is not None else "n/a" for v in (a["scores"][n] for n in names)])
    if console.is_terminal:
        console.print(table)
    else:  # a log or a pipe: wide enough for every column
        from rich.console import Console

        Console(quiet=console.quiet, width=16 + 11 * len(names)).print(table)


def _print_scorers() -> None:
    from rich.table import Table

    table = Table(title="scorers (archgraph score --scorers A,B; docs/scoring.md)")
    for col in ("name", "better", "needs a trained supernet", "what"):
        table.add_column(col)
    for row in scorer_table():
        table.add_row(*row)
    console.print(table)
