"""Does the additive latency table predict what a derived network really takes?

Builds the space's latency table on this device at the deployment resolution
(:func:`archgraph.core.latency.measure_latency_table`), then for N random derived architectures
(``sample_architecture``, seeds 0..N-1) compares the table's prediction
(:meth:`archgraph.core.costmodel.CostModel.of_graph`) with the measured end-to-end latency of the
compiled network (batch 1, eval, median of ``--reps``; two rounds over all architectures, the lower
median kept, so a burst of load from another process on a shared machine hits one round only).

Reports Spearman and Kendall rank correlation (scipy), the mean absolute percentage error (MAPE), the
mean ratio measured / predicted, a least-squares fit of the residual against the number of nodes
(a per-node overhead the additive model leaves out: the plan loop, the mixers' Python dispatch),
and the error by size tertile (where small layers and launch overheads dominate).

    OMP_NUM_THREADS=1 python benchmarks/latency_model.py                      # defaults: a few minutes on one core
    OMP_NUM_THREADS=1 python benchmarks/latency_model.py --layers 4 --channels 8 --resolution 128x256 --archs 50 --markdown
    python benchmarks/latency_model.py --device cuda --layers 14 --channels 64 --resolution 512x1024 --archs 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="dcss")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--channels", type=int, default=8, help="space.base_channels")
    ap.add_argument("--resolution", default="128x256", help="deployment resolution HxW")
    ap.add_argument("--archs", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7, help="timed passes per architecture and per table entry")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calibrate", type=int, default=20, help="architectures (other seeds than the 50) the table is calibrated on, as `archgraph latency` does (0: none)")
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    ap.add_argument("--json", default=None, help="write every architecture's numbers here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from scipy import stats

    from archgraph.core.compile import compile_graph
    from archgraph.core.costmodel import CostModel, parse_resolution
    from archgraph.core.decode import sample_architecture
    from archgraph.core.latency import measure_latency_table, time_networks_ms
    from archgraph.core.latencycal import fit_overhead, mape
    from archgraph.core.measure import Timer
    from archgraph.core.spaces_api import build_space

    res = parse_resolution(args.resolution)
    graph = build_space(args.space, {"layers": args.layers, "base_channels": args.channels})
    with Timer(args.device) as clock:
        table = measure_latency_table(graph, res, args.device, args.dtype, args.warmup, args.reps)
    table_s = clock.seconds
    lat = CostModel(graph, "latency", res, table)
    flops = CostModel(graph, "flops", res)
    calibrated = None
    if args.calibrate:
        from archgraph.core.latencycal import calibrate_table

        cal = calibrate_table(graph, table, args.calibrate, 2, args.warmup, args.reps)
        calibrated = CostModel(graph, "latency", res, table)

    archs = [sample_architecture(graph, seed) for seed in range(args.archs)]
    pred = [lat.of_graph(a) for a in archs]
    gflop = [flops.of_graph(a) for a in archs]
    nodes = [a.number_of_nodes() - 1 for a in archs]
    nets = [compile_graph(a) for a in archs]
    with Timer(args.device) as clock:
        meas = time_networks_ms(nets, res, args.device, args.dtype, args.warmup, args.reps, rounds=2)
    measure_s = clock.seconds

    pred_cal = [calibrated.of_graph(a) for a in archs] if calibrated is not None else None
    rho = stats.spearmanr(pred, meas).statistic
    tau = stats.kendalltau(pred, meas).statistic
    ratio = [m / p for p, m in zip(pred, meas)]
    a, b = fit_overhead(nodes, [m - p for p, m in zip(pred, meas)])
    corrected = [p + a + b * n for p, n in zip(pred, nodes)]
    order = sorted(range(len(archs)), key=lambda i: gflop[i])
    thirds = [order[k * len(order) // 3 : (k + 1) * len(order) // 3] for k in range(3)]

    head = f"{args.space} L={args.layers} F={args.channels} at {res[0]}x{res[1]} {args.dtype} on {table.describe()}, {args.threads} thread(s)"
    rows = [
        ("architectures", f"{len(archs)}"),
        ("table entries (distinct modules)", f"{len(table.entries)}, measured in {table_s:.1f} s"),
        ("measured latency, median [min, max] (ms)", f"{statistics.median(meas):.2f} [{min(meas):.2f}, {max(meas):.2f}]"),
        ("predicted: paid by every architecture (head, stems)", f"{lat.fixed():.2f} ms of {statistics.fmean(pred):.2f} ms on average"),
        ("Spearman rho", f"{rho:.3f}"),
        ("Kendall tau", f"{tau:.3f}"),
        ("MAPE, additive table", f"{mape(pred, meas):.1f}%"),
        ("measured / predicted, mean [min, max]", f"{statistics.fmean(ratio):.3f} [{min(ratio):.3f}, {max(ratio):.3f}]"),
        ("residual fit: a + b * nodes (ms)", f"a = {a:.3f}, b = {b:.4f} per node"),
        ("MAPE after the per-node fit (in sample)", f"{mape(corrected, meas):.1f}%"),
        *(
            [
                ("calibration (other architectures)", f"{cal['intercept_ms']:+.3f} ms + {cal['per_node_ms']:.4f} ms per node, from {cal['archs']}"),
                ("MAPE, calibrated table", f"{mape(pred_cal, meas):.1f}%"),
                (
                    "measured / calibrated, mean [min, max]",
                    f"{statistics.fmean(m / p for p, m in zip(pred_cal, meas)):.3f} [{min(m / p for p, m in zip(pred_cal, meas)):.3f}, {max(m / p for p, m in zip(pred_cal, meas)):.3f}]",
                ),
            ]
            if pred_cal is not None
            else []
        ),
        ("end-to-end timing of all archs", f"{measure_s:.1f} s"),
    ]
    by_size = []
    for name, idx in zip(("smallest third", "middle third", "largest third"), thirds):
        p, m = [pred[i] for i in idx], [meas[i] for i in idx]
        by_size.append(
            (name, f"{min(gflop[i] for i in idx):.3f}-{max(gflop[i] for i in idx):.3f}", f"{statistics.fmean(m):.2f}", f"{mape(p, m):.1f}%", f"{statistics.fmean(x / y for x, y in zip(m, p)):.3f}")
        )
    _print(head, ("measure", "value"), rows, args.markdown)
    _print("error by size (GFLOP tertiles)", ("architectures", "GFLOP", "measured ms", "MAPE", "measured / predicted"), by_size, args.markdown)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"setting": head, "predicted_ms": pred, "calibrated_ms": pred_cal, "measured_ms": meas, "gflop": gflop, "nodes": nodes, "spearman": rho, "kendall": tau, "table_meta": table.meta},
                indent=2,
            )
            + "\n"
        )
    return 0


def _print(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]], markdown: bool) -> None:
    print(f"\n{title}")
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for r in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


if __name__ == "__main__":
    sys.exit(main())
