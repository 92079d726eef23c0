"""``archgraph select``: run a selector again on a finished search's trained supernet."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from archgraph.commands import rank_console

console = rank_console()
SELECTED = "selected"  # RUN/selected/<spec>/: arch.yaml, scores.json, selection.json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "select",
        help="pick an architecture from a finished search's supernet with another selector (argmax, topk:K, perturb, proxy:NAME)",
        description="Selection is a stage of its own: this loads the trained supernet of a finished search (RUN: an `archgraph "
        "search` folder) and runs each selector given with --select on it, as `search.select=SPEC` would have at the end of "
        "that search (same weights, the selection split carved from the training data, K from the search's own steps). "
        "Each pick goes to RUN/selected/<spec>/ (arch.yaml, scores.json, selection.json); an existing one is kept unless "
        "--force. Train a pick with `archgraph train RUN/selected/<spec>/arch.yaml`. Selectors: argmax, "
        "topk[:K][:uniform], perturb[:tune=N], proxy:NAME[:K] and plug-ins; docs/strategies.md, \"Selection\".",
    )
    p.add_argument("run_dir", metavar="RUN", help="a finished `archgraph search` folder (config.yaml, checkpoint.pt, final.json)")
    p.add_argument("--select", dest="specs", nargs="+", required=True, metavar="SPEC", help="one or more selector specs, e.g. argmax topk:24 perturb proxy:synflow:16")
    p.add_argument("--device", default=None, help="device to score on (default: the search's)")
    p.add_argument("--force", action="store_true", help="replace an existing pick of the same selector")
    p.set_defaults(func=cmd_select)


def selection_folder(run_dir: Path, spec: str) -> Path:
    """RUN/selected/<spec with every character a file name may not hold replaced by '-'>."""
    return run_dir / SELECTED / re.sub(r"[^A-Za-z0-9_.=-]+", "-", spec)


def cmd_select(args: argparse.Namespace) -> int:
    from archgraph.core.graph import save
    from archgraph.engine.selection import get_selector
    from archgraph.errors import ConfigError
    from archgraph.io import atomic_write_json
    from archgraph.studies.reselect import select_from_run

    run = Path(args.run_dir)
    specs = [get_selector(s).spec for s in args.specs]  # every spec checked before any work
    folders = {spec: selection_folder(run, spec) for spec in specs}
    existing = [str(f) for f in folders.values() if (f / "selection.json").is_file()]
    if existing and not args.force:
        raise ConfigError(f"{existing[0]} holds a pick of the same selector; add --force to replace it")
    for spec, folder in folders.items():
        derived, scores, record = select_from_run(run, spec, args.device, say=lambda line: console.print(line, highlight=False))
        folder.mkdir(parents=True, exist_ok=True)
        save(derived, folder / "arch.yaml")
        atomic_write_json(folder / "scores.json", {"ops": scores[0], "inputs": scores[1]})
        atomic_write_json(folder / "selection.json", record)
        console.print(f"{spec}: candidate {record['picked'] + 1} of {record['candidates']} -> {folder / 'arch.yaml'}", highlight=False)
    return 0
