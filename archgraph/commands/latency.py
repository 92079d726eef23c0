"""``archgraph latency``: measure a search space's latency table on this device, once, to reuse and share."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from archgraph.commands import add_config_args, rank_console

console = rank_console()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "latency",
        help="measure the latency table of a space's modules on this device at a deployment resolution",
        description="Time every distinct module an architecture of the space can contain (candidate ops, alignment branches, "
        "additions, concat fusion, stems, head; modules with the same op, size, channels, stride and up-sampling are timed once) "
        "on --device at --resolution (batch 1, median of --reps after --warmup passes; CUDA with events and synchronisation) and "
        "write a JSON table with the device and its name, the library versions, the date, the resolution and the dtype inside. "
        "Each module is timed in --rounds passes (the lowest median kept), and the table is calibrated on --calibrate random "
        "architectures timed end to end (the per-node overhead the module sum leaves out). "
        "Searches use it for latency budgets (search.cost_table); an existing table of the same device, resolution and dtype is "
        "extended (only missing entries are timed) unless --force. docs/costs.md.",
    )
    add_config_args(p, positional=False)
    p.add_argument("--space", default=None, help="search space (default: the config's space.name); size it with --set space.layers=...")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--resolution", default=None, metavar="HxW", help="deployment resolution, e.g. 512x1024 (default: the config's data.crop)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="precision of the timed modules (default fp32)")
    p.add_argument("--warmup", type=int, default=3, help="untimed passes before timing each module (default 3)")
    p.add_argument("--reps", type=int, default=10, help="timed passes per module; the median is kept (default 10)")
    p.add_argument("--rounds", type=int, default=2, help="passes over all modules, each module's lowest median kept (default 2: a burst of load hits one pass)")
    p.add_argument(
        "--calibrate",
        type=int,
        default=20,
        metavar="N",
        help="time N random derived architectures end to end and fit the per-node overhead the module sum leaves out (default 20; 0: none); docs/costs.md",
    )
    p.add_argument("--out", required=True, help="the table to write, e.g. latency-cpu-512x1024.json")
    p.add_argument("--force", action="store_true", help="start a fresh table instead of extending an existing one")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.set_defaults(func=cmd_latency)


def cmd_latency(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from archgraph.commands.core import resolve_config, space_graph
    from archgraph.core.costitems import distinct_items
    from archgraph.core.costmodel import CostModel, parse_resolution
    from archgraph.core.latency import LatencyTable, measure_latency_table, resolve_device
    from archgraph.errors import ConfigError
    from archgraph.runfolder import check_output_file

    if args.reps < 1 or args.warmup < 0 or args.rounds < 1:
        raise ConfigError(f"--reps and --rounds must be >= 1 and --warmup >= 0, got --reps {args.reps} --rounds {args.rounds} --warmup {args.warmup}")
    if args.calibrate == 1 or args.calibrate < 0:
        raise ConfigError(f"--calibrate needs 0 (no calibration) or at least 2 architectures to fit, got {args.calibrate}")
    out = Path(args.out)
    check_output_file(out, "--out", "latency.json")
    cfg = resolve_config(args)
    resolution = parse_resolution(args.resolution) if args.resolution else (int(cfg.data.crop[0]), int(cfg.data.crop[1]))
    device = resolve_device(args.device)
    graph = space_graph(cfg)
    table = None
    if out.exists() and not args.force:
        table = LatencyTable.load(out)
        try:
            table.check(device.type, resolution, args.dtype, source=f"the existing table {out}")
        except ConfigError as exc:
            raise ConfigError(f"{exc} (or pass --force to replace it, or another --out)") from None
    before = len(table.entries) if table is not None else 0
    partial = out.with_name(out.name + ".partial.json")  # what an interrupted run of this command timed
    if args.force:
        partial.unlink(missing_ok=True)
    elif partial.is_file():
        console.print(f"continuing from the modules timed before the last interruption ({partial})", highlight=False)
    total = len(distinct_items(graph, resolution))
    start = time.perf_counter()
    with Progress(
        TextColumn("[bold]timing modules"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        disable=args.no_progress or not console.is_terminal,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=total)
        table = measure_latency_table(
            graph,
            resolution,
            device,
            args.dtype,
            args.warmup,
            args.reps,
            progress=lambda done, n, key: bar.update(task, completed=done, description=key.split("|", 2)[1]),
            table=table,
            rounds=args.rounds,
            partial=partial,
        )
    seconds = time.perf_counter() - start
    table.meta.pop("calibration", None)  # an extended table's old calibration no longer describes its entries
    table.save(out)  # the timed modules are kept even if the calibration below is interrupted
    if args.calibrate:
        from archgraph.core.latencycal import calibrate_table

        console.print(f"calibrating: {args.calibrate} random architectures end to end, {args.rounds} rounds", highlight=False)
        calibrate_table(graph, table, args.calibrate, args.rounds, args.warmup, args.reps)
        table.save(out)
    model = CostModel(graph, "latency", resolution, table)
    summary = Table(title=f"latency table {out}", show_header=False)
    summary.add_column("what")
    summary.add_column("value", overflow="fold")
    rows = [
        ("device", table.describe()),
        ("space", f"{cfg.space_name} ({graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges)"),
        ("distinct modules", f"{total} ({len(table.entries) - before} timed now, {before} reused) in {seconds:.1f} s"),
        ("paid by every architecture", f"{model.fixed():.3f} ms"),
        ("expected, uniform choices", f"{float(model.expected({}, {})):.3f} ms (additive prediction; docs/costs.md for its error)"),
        ("calibration", _calibration_line(table.meta.get("calibration"))),
        ("torch / archgraph", f"{table.meta['torch']} / {table.meta['archgraph']}, {table.meta['threads']} threads, {table.meta['date']}"),
    ]
    for row in rows:
        summary.add_row(*row)
    console.print(summary)
    console.print(f"wrote {out}; use it with --set search.cost_table={out}")
    return 0


def _calibration_line(cal: dict | None) -> str:
    if not cal:
        return "none (--calibrate N fits the per-node overhead; the module sum alone under-predicts whole networks)"
    return (
        f"{cal['intercept_ms']:+.3f} ms + {cal['per_node_ms']:.4f} ms per node, from {cal['archs']} architectures: "
        f"error {cal['mape_before']:.1f}% -> {cal['mape_after']:.1f}% (measured / module sum {cal['measured_over_predicted']:.2f})"
    )
