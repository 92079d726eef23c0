"""Calibrating a latency table against whole networks: the per-node overhead the item sum leaves out.

A table's prediction is the sum of its items' isolated latencies (:mod:`archgraph.core.latency`). A
compiled network also pays per node what no isolated item pays: the plan's Python dispatch, the
fusion bookkeeping, feature maps that are cold in cache where a module timed alone runs hot. On a quiet
2-core CPU (DCSS L=4) that left the sum 13-22% below the measured latency with a tight ratio
(1.17-1.31), and a residual fit ``measured - predicted = a + b * nodes`` brought the error from 11-18%
to 2-3% (benchmarks/README.md, "Latency model").

:func:`calibrate_table` times ``archs`` random derived architectures end to end (seeds
``CALIBRATION_SEED + i``, disjoint from the seeds the validation benchmark draws), fits ``a`` and
``b`` by least squares, and stores them in the table's ``meta["calibration"]`` with the error before
and after on the calibration set. :class:`~archgraph.core.costmodel.CostModel` then adds ``b`` per
node an architecture runs (the probability that the head reaches it, for the expected cost) and
``a`` once.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

import networkx as nx

from archgraph.core.latency import LatencyTable, time_networks_ms
from archgraph.errors import ConfigError

CALIBRATION_SEED = 1_000_000  # architectures seeds CALIBRATION_SEED + i: none of the validation benchmark's 0..N-1


def fit_overhead(nodes: list[int], residual: list[float]) -> tuple[float, float]:
    """Least squares ``residual = a + b * nodes``: (a, b); (mean, 0) when every architecture has the
    same node count."""
    n = len(nodes)
    if n == 0:
        raise ConfigError("a latency calibration needs at least one architecture")
    mx, my = sum(nodes) / n, sum(residual) / n
    sxx = sum((x - mx) ** 2 for x in nodes)
    b = sum((x - mx) * (y - my) for x, y in zip(nodes, residual)) / sxx if sxx else 0.0
    return my - b * mx, b


def mape(predicted: list[float], measured: list[float]) -> float:
    """Mean absolute percentage error of ``predicted`` against ``measured`` (%)."""
    return 100.0 * statistics.fmean(abs(p - m) / m for p, m in zip(predicted, measured))


def calibrate_table(
    graph: nx.DiGraph,
    table: LatencyTable,
    archs: int = 20,
    rounds: int = 2,
    warmup: int = 2,
    reps: int = 10,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Time ``archs`` random derived architectures of ``graph`` end to end on the table's device, at
    its resolution and dtype (``rounds`` passes over all of them, each one's lowest median kept, as
    the table's items), fit the per-node overhead and store it in ``table.meta["calibration"]``."""
    from archgraph.core.compile import compile_graph
    from archgraph.core.costmodel import CostModel
    from archgraph.core.decode import sample_architecture

    if archs < 2:
        raise ConfigError(f"a latency calibration needs at least 2 architectures to fit, got {archs}")
    meta = table.meta
    resolution = (int(meta["resolution"][0]), int(meta["resolution"][1]))
    uncalibrated = LatencyTable({k: v for k, v in meta.items() if k != "calibration"}, table.entries)
    model = CostModel(graph, "latency", resolution, uncalibrated)
    derived = [sample_architecture(graph, CALIBRATION_SEED + i) for i in range(archs)]
    predicted = [model.of_graph(a) for a in derived]
    nodes = [a.number_of_nodes() - 1 for a in derived]  # the input node runs nothing
    nets = [compile_graph(a) for a in derived]
    measured = time_networks_ms(nets, resolution, meta["device"], meta["dtype"], warmup, reps, rounds, progress)
    a, b = fit_overhead(nodes, [m - p for p, m in zip(predicted, measured)])
    corrected = [p + a + b * n for p, n in zip(predicted, nodes)]
    record = {
        "intercept_ms": a,
        "per_node_ms": b,
        "archs": archs,
        "seeds": f"{CALIBRATION_SEED}..{CALIBRATION_SEED + archs - 1}",
        "rounds": rounds,
        "mape_before": mape(predicted, measured),
        "mape_after": mape(corrected, measured),
        "measured_over_predicted": statistics.fmean(m / p for p, m in zip(predicted, measured)),
    }
    meta["calibration"] = record
    return record


__all__ = ["CALIBRATION_SEED", "calibrate_table", "fit_overhead", "mape"]
