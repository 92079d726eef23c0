"""``archgraph search`` and ``archgraph report``."""

from __future__ import annotations

import argparse
from pathlib import Path


from archgraph.commands import add_config_args, rank_console
from archgraph.outputs.watch import DEFAULT_FRAMES

console = rank_console()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search an architecture (default: DCNAS on a small DCSS with synthetic data, about 100 s on 2 CPU cores)",
        description="Search an architecture and write a run folder: arch.yaml, search.jsonl, supernet.svg, arch.svg, "
        "scores.json, config.yaml, checkpoint.pt. With no config at all it runs a small demo search on synthetic data.",
    )
    add_config_args(p)
    p.add_argument("--out", required=True, help="run folder to write (created if missing)")
    p.add_argument("--resume", action="store_true", help="continue the search in --out from its last finished epoch")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("report", help="write RUN_DIR/report.html: pictures, curves, config, size of the derived model")
    p.add_argument("run_dir", help="a run folder written by `archgraph search`")
    p.add_argument("-o", "--output", default=None, help="HTML file (default: RUN_DIR/report.html)")
    p.add_argument("--frames", type=positive_int, default=DEFAULT_FRAMES, help=f"supernet pictures in the epoch-by-epoch view, evenly spread over the search (default {DEFAULT_FRAMES})")
    p.set_defaults(func=cmd_report)


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def cmd_search(args: argparse.Namespace) -> int:
    from archgraph.engine.search import prepare_config, run_search
    from archgraph.runfolder import check_output_folder, run_lock

    out = Path(args.out)
    check_output_folder(out, kind="search")
    with run_lock(out, "search"):  # a second search into the same --out is refused while this one runs
        cfg = prepare_config(args.config, args.overrides, out, args.resume)
        console.print(f"searching: space [bold]{cfg.space_name}[/] strategy [bold]{cfg.strategy_name}[/] data [bold]{cfg.data.name}[/] -> {out}")
        record = run_search(cfg, out, resume=args.resume, progress=not args.no_progress)
    s_miou = record.get("s_miou")
    pictures = ", ".join(p.name for p in sorted(out.glob("*.svg"))) or "supernet.dot, arch.dot (install Graphviz for SVGs)"
    console.print(
        f"done in {record.get('wall_seconds', 0.0):.0f} s: {out / 'arch.yaml'}"
        + (f" (S-mIoU {s_miou:.4f})" if s_miou is not None else "")
        + f"; also {pictures}, search.jsonl, scores.json, final.json",
        highlight=False,
    )
    from archgraph.runfolder import free_path

    console.print(f"next: archgraph train {out} --out {free_path(out, '-train')}   (or: archgraph report {out})", highlight=False)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import sys

    from archgraph.outputs.report import search_status, write_report

    run = Path(args.run_dir)
    path = write_report(run, Path(args.output) if args.output else None, frames=args.frames)
    status = search_status(run)
    if not status.finished:
        go_on = f"; continue it with `archgraph search --out {run} --resume`" if status.resumable else " and has no checkpoint to continue from"
        planned = f" of {status.epochs_planned}" if status.epochs_planned is not None else ""
        print(f"warning: {run} is an unfinished search ({status.epochs_done}{planned} epochs done); the report shows it so far{go_on}", file=sys.stderr)
    console.print(f"wrote {path}")
    return 0
