"""A search's cost budget: the limit a user names and the one cost model that checks it.

``search.cost_limit`` (``latency=33ms@512x1024``, ``flops=1.5G``, ``params=2M``) is parsed by
:func:`archgraph.core.costmodel.parse_cost_limit`; :func:`make_budget` pairs it with the graph's
:class:`~archgraph.core.costmodel.CostModel` at the limit's deployment resolution (the training crop
when the limit names none). Every strategy honours the same object in its own way
(docs/costs.md, "Budgets"):

- the differentiable ones (dcnas, darts, pc_darts, p_darts) add :meth:`CostBudget.hinge` of the
  expected cost under their current distribution to the architecture loss;
- ProxylessNAS uses the limit as the target of its own hardware loss;
- the sampling and evolutionary ones (SPOS, rsws, random baselines, topk/proxy selection) reject
  every candidate :meth:`CostBudget.within` refuses before it is scored.

:func:`measured_cost` is the check afterwards: the derived network compiled alone and its cost
measured (latency timed at the deployment resolution, FLOPs counted, parameters counted), so
final.json holds both the model's prediction and what the network really costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import networkx as nx
import torch

from archgraph.core.costmodel import CostLimit, CostModel, parse_cost_limit
from archgraph.core.latency import LatencyTable, measure_latency_table, time_network_ms
from archgraph.errors import ConfigError

# The band under the limit inside which a result counts as "at" the budget when the weight adapts
# (FasterSeg keeps the searched network between FPS_min and FPS_max, a band of about 12%).
BAND = 0.1
OpIdx = Mapping[str, int]
InputIdx = Mapping[str, Sequence[int]]


@dataclass
class CostBudget:
    """A limit and the cost model that measures candidates against it."""

    limit: CostLimit
    model: CostModel
    spec: str

    @property
    def unit(self) -> str:
        return str(self.model.unit)

    @property
    def value(self) -> float:
        return float(self.limit.value)

    def cost(self, op_idx: OpIdx, input_idx: InputIdx) -> float:
        """The predicted cost of the architecture these decisions derive."""
        return float(self.model.of_decisions(dict(op_idx), {k: list(v) for k, v in input_idx.items()}))

    def within(self, op_idx: OpIdx, input_idx: InputIdx) -> bool:
        """The hard constraint of the sampling and evolutionary strategies."""
        return self.cost(op_idx, input_idx) <= self.value

    def hinge(self, expected: torch.Tensor, target: float | None = None) -> torch.Tensor:
        """``max(0, E[cost] / target - 1)``: zero inside the budget, so accuracy is never traded for
        savings nobody asked for; linear outside it, relative so that one weight serves milliseconds
        and GFLOPs alike (``target`` defaults to the limit)."""
        t = float(target if target is not None else self.value)
        return torch.relu(expected / t - 1.0)

    def describe(self) -> str:
        return f"{self.spec} ({self.value:g} {self.unit})"


def resolution_of(limit: CostLimit, crop: Sequence[int]) -> tuple[int, int]:
    """Where costs are counted: the limit's deployment resolution, else the training crop."""
    res = limit.resolution if limit.resolution is not None else crop
    return int(res[0]), int(res[1])


MEASURED_TABLE = "latency-table.json"  # a search run folder's latency table, when the search measured one (make_budget's keep)
ONTHEFLY_CALIBRATION = 8  # architectures a table measured at the search's start is calibrated on (a built table: `archgraph latency --calibrate`, 20)


def make_budget(
    graph: nx.DiGraph,
    spec: str,
    crop: Sequence[int],
    device: torch.device | str = "cpu",
    table: str | Path | None = None,
    dtype: str = "fp32",
    keep: str | Path | None = None,
) -> CostBudget:
    """The budget of ``search.cost_limit=spec`` on ``graph``. A latency limit reads ``table`` (a file
    from ``archgraph latency``, refused when it was measured elsewhere) or, without one, measures
    a table now on ``device`` at the deployment resolution, calibrated on a few whole networks
    (seconds to minutes: build it once).

    ``keep``: where a table measured now is kept (a search's run folder). When that file exists it
    is read back and extended with only what ``graph`` adds (a deeper P-DARTS stage), so a resumed
    search, each later stage and ``archgraph select`` predict with the numbers the search started
    with instead of timing everything again (and getting other numbers on a busy machine)."""
    limit = parse_cost_limit(spec)
    resolution = resolution_of(limit, crop)
    lat: LatencyTable | None = None
    if limit.metric == "latency":
        dev = torch.device(device)
        if table is not None:
            lat = _load_table(Path(table), dev, resolution, dtype)
        else:
            lat = _measured_table(graph, dev, resolution, dtype, None if keep is None else Path(keep))
    elif table is not None:
        raise ConfigError(f"search.cost_table is a latency table, but search.cost_limit={spec!r} limits {limit.metric}; leave search.cost_table out or limit latency")
    return CostBudget(limit, CostModel(graph, limit.metric, resolution, lat), spec)


def _measured_table(graph: nx.DiGraph, device: torch.device, resolution: tuple[int, int], dtype: str, keep: Path | None) -> LatencyTable:
    """A latency table of ``graph`` measured on ``device`` now (kept in ``keep``, extended from it)."""
    from archgraph.core.latencycal import calibrate_table

    kept = LatencyTable.load(keep, device=device.type, resolution=resolution, dtype=dtype) if keep is not None and keep.is_file() else None
    known = len(kept.entries) if kept is not None else -1
    lat = measure_latency_table(graph, resolution, device, dtype, warmup=1, reps=3, table=kept)  # extends kept in place
    if not lat.meta.get("calibration"):
        calibrate_table(graph, lat, archs=ONTHEFLY_CALIBRATION, rounds=1, warmup=1, reps=3)
    if keep is not None and len(lat.entries) != known:
        lat.save(keep)
    return lat


def _load_table(path: Path, device: torch.device, resolution: tuple[int, int], dtype: str) -> LatencyTable:
    if not path.is_file():
        raise ConfigError(
            f"search.cost_table={path}: no such file; build one with `archgraph latency --resolution {resolution[0]}x{resolution[1]} --out {path}` or leave search.cost_table out to measure it now"
        )
    return LatencyTable.load(path, device=device.type, resolution=resolution, dtype=dtype)


@torch.no_grad()
def measured_cost(derived: nx.DiGraph, limit: CostLimit, resolution: Sequence[int], device: torch.device | str = "cpu", reps: int = 5) -> float:
    """What the derived network costs when compiled alone: latency (ms, the median of ``reps`` timed
    forward passes at batch 1 after a warm-up, timed as the table's entries are: CUDA events on a GPU),
    FLOPs (G) or parameters (M)."""
    from archgraph.core.compile import compile_graph
    from archgraph.core.costs import count_params, model_flops

    net = compile_graph(derived).eval()
    if limit.metric == "params":
        return count_params(net) / 1e6
    if limit.metric == "flops":
        return model_flops(net, tuple(int(d) for d in resolution)) / 1e9
    return time_network_ms(net, resolution, torch.device(device), "fp32", warmup=1, reps=max(1, reps))


def budget_record(budget: CostBudget, predicted: float, measured: float | None, rule: str, resolution: Sequence[int] | None = None) -> dict[str, Any]:
    """final.json's ``cost`` entry: the limit, the predicted and measured cost, the rule the strategy
    honoured it by, and whether the result is within the limit (by the cost model's prediction, the
    number the search steered by; the measurement shows the model's error beside it)."""
    return {
        "limit": budget.spec,
        "metric": budget.limit.metric,
        "unit": budget.unit,
        "value": budget.value,
        "resolution": list(resolution) if resolution is not None else None,
        "predicted": predicted,
        "measured": measured,
        "rule": rule,
        "within_budget": bool(predicted <= budget.value),
        # a latency prediction's calibration against whole networks (None: the bare module sum)
        "calibration": (budget.model.table.meta.get("calibration") if budget.model.table is not None else None),
    }
