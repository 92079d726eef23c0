"""Comparisons at equal cost: one study per budget, and each strategy's Pareto front across them.

``archgraph compare --cost-limit A,B,...`` runs the whole study (every strategy, every baseline) once
per budget, in ``OUT/budgets/<budget>/`` with ``search.cost_limit`` set, so every strategy and every
random baseline is held to the same limit. With two or more budgets :func:`write_pareto` writes
``pareto.json``, ``pareto.md`` and ``pareto.png``/``.svg`` in ``OUT``: T-mIoU against the measured
cost of each architecture, each strategy's non-dominated points joined into its front, random
architectures as grey points with their own front, presets placed as labelled markers.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from archgraph.config import config_from_dict
from archgraph.errors import ConfigError
from archgraph.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from archgraph.studies.compare.plan import Plan

BUDGETS = "budgets"  # OUT/budgets/<slug>/: one comparison per budget
Point = tuple[float, float]  # (cost, T-mIoU)


def parse_cost_limits(text: str) -> list[str]:
    """``latency=20ms@256x512,latency=40ms@256x512`` -> the specs, each checked; one metric for all
    (a front needs one cost axis)."""
    from archgraph.core.costmodel import parse_cost_limit

    specs = [s.strip() for s in re.split(r",(?=\s*(?:latency|flops|params)\s*=)", str(text)) if s.strip()]
    if not specs:
        raise ConfigError("--cost-limit is empty; give one or more budgets, e.g. --cost-limit flops=0.5G,flops=1G")
    limits = [parse_cost_limit(s) for s in specs]
    if len({lim.metric for lim in limits}) > 1:
        raise ConfigError(f"--cost-limit {text!r} mixes metrics ({', '.join(sorted({lim.metric for lim in limits}))}); a Pareto front has one cost axis: give budgets of one metric")
    if len(set(specs)) != len(specs):
        raise ConfigError(f"--cost-limit {text!r} names a budget twice")
    return specs


def budget_slug(spec: str) -> str:
    """A budget as a folder name: ``latency=33ms@512x1024`` -> ``latency-33ms-512x1024``."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", spec).strip("-")


def budget_plan(plan: Plan, spec: str) -> Plan:
    """``plan`` with every run held to ``spec`` (``search.cost_limit`` in its base config)."""
    data = plan.base.to_dict()
    data["search"] = {**data["search"], "cost_limit": spec}
    return dataclasses.replace(plan, base=config_from_dict(data))


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points (lower cost and higher mIoU are better), by cost. A point is
    dominated when another costs no more and scores no less, and is better in one of the two; equal
    points are all kept."""
    front = []
    for i, (c, m) in enumerate(points):
        dominated = any((c2 <= c and m2 >= m) and (c2 < c or m2 > m) for j, (c2, m2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def _run_points(entry: dict[str, Any]) -> list[tuple[Point, str]]:
    """(cost, T-mIoU) of each finished run of an entry that has both."""
    out = []
    for r in entry["runs"]:
        cost = (r.get("cost") or {}).get("measured")
        if r.get("status") == "done" and cost is not None and r.get("t_miou") is not None:
            out.append(((float(cost), float(r["t_miou"])), str(r.get("folder", ""))))
    return out


def collect_points(by_budget: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """pareto.json's contents: per strategy entry its point at each budget (means over seeds) and its
    front; the random architectures (every budget's) and their front; the presets (once)."""
    strategies: dict[str, list[dict[str, Any]]] = {}
    random_pts: list[dict[str, Any]] = []
    presets: dict[str, dict[str, Any]] = {}
    unit = metric = None
    for spec, results in by_budget:
        for e in results["entries"]:
            pts = _run_points(e)
            for r in e["runs"]:
                c = r.get("cost") or {}
                unit, metric = c.get("unit", unit), c.get("metric", metric)
            if not pts:
                continue
            if e["kind"] == "strategy":
                cost = sum(p[0][0] for p in pts) / len(pts)
                miou = sum(p[0][1] for p in pts) / len(pts)
                strategies.setdefault(e["name"], []).append({"budget": spec, "cost": cost, "t_miou": miou, "runs": len(pts)})
            elif e["kind"] == "random":
                random_pts += [{"budget": spec, "cost": p[0], "t_miou": p[1], "folder": f} for p, f in pts]
            elif e["name"] not in presets:
                presets[e["name"]] = {"cost": sum(p[0][0] for p in pts) / len(pts), "t_miou": sum(p[0][1] for p in pts) / len(pts)}
    fronts = {name: [pts[i] for i in pareto_front([(p["cost"], p["t_miou"]) for p in pts])] for name, pts in strategies.items()}
    rfront = [random_pts[i] for i in pareto_front([(p["cost"], p["t_miou"]) for p in random_pts])]
    return {
        "budgets": [s for s, _ in by_budget],
        "metric": metric,
        "unit": unit,
        "strategies": strategies,
        "fronts": fronts,
        "random": random_pts,
        "random_front": rfront,
        "presets": presets,
        "notes": {
            "cost": "measured cost of the architecture compiled alone (latency timed at the budget's resolution; FLOPs, parameters counted)",
            "t_miou": "stand-alone mIoU on the validation split; a strategy's point at a budget is the mean over its seeds",
            "front": "points no other point of the same entry beats in both cost and T-mIoU",
        },
    }


def pareto_markdown(points: dict[str, Any]) -> str:
    """The table: one row per entry, one column per budget (T-mIoU / cost), the front marked."""
    unit = points.get("unit") or ""
    budgets = points["budgets"]
    lines = [
        f"# Pareto: T-mIoU against {points.get('metric') or 'cost'}",
        "",
        "Each cell: T-mIoU (mean over seeds) / measured cost; * = on the entry's Pareto front.",
        "",
        "| entry | " + " | ".join(budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for name, pts in points["strategies"].items():
        front = {(p["budget"], p["cost"]) for p in points["fronts"][name]}
        at = {p["budget"]: p for p in pts}
        cells = [(f"{at[b]['t_miou']:.4f} / {at[b]['cost']:.4g} {unit}" + (" *" if (b, at[b]["cost"]) in front else "")) if b in at else "-" for b in budgets]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if points["random"]:
        cells = []
        for b in budgets:
            mine = [p for p in points["random"] if p["budget"] == b]
            cells.append(f"best {max(p['t_miou'] for p in mine):.4f} of {len(mine)}" if mine else "-")
        lines.append("| random | " + " | ".join(cells) + " |")
    for name, p in points["presets"].items():
        lines.append(f"| {name} | " + " | ".join([f"{p['t_miou']:.4f} / {p['cost']:.4g} {unit}"] * len(budgets)) + " |")
    return "\n".join(lines) + "\n"


def pareto_figure(points: dict[str, Any]):
    """T-mIoU against cost: a line per strategy through its front (its other points hollow), random
    architectures grey, presets as labelled diamonds, the budgets as dotted vertical lines."""
    from archgraph.core.costmodel import parse_cost_limit
    from archgraph.outputs.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if points["random"]:
        ax.scatter([p["cost"] for p in points["random"]], [p["t_miou"] for p in points["random"]], s=14, color="#9a9a9a", alpha=0.6, label="random")
        rf = points["random_front"]
        ax.plot([p["cost"] for p in rf], [p["t_miou"] for p in rf], color="#9a9a9a", lw=1, ls="--")
    for i, (name, pts) in enumerate(points["strategies"].items()):
        colour = palette[i % len(palette)]
        front = points["fronts"][name]
        ax.plot([p["cost"] for p in front], [p["t_miou"] for p in front], marker="o", color=colour, lw=1.6, label=name)
        off = [p for p in pts if p not in front]
        ax.scatter([p["cost"] for p in off], [p["t_miou"] for p in off], facecolors="none", edgecolors=colour, s=30)
    for name, p in points["presets"].items():
        ax.scatter([p["cost"]], [p["t_miou"]], marker="D", color="#222222", s=36, zorder=3)
        ax.annotate(name.split(":", 1)[-1], (p["cost"], p["t_miou"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for spec in points["budgets"]:
        ax.axvline(float(parse_cost_limit(spec).value), color="#444444", ls=":", lw=0.8)
    ax.set_xlabel(f"{points.get('metric') or 'cost'} ({points.get('unit') or ''}), measured")
    ax.set_ylabel("T-mIoU (stand-alone)")
    ax.set_title("T-mIoU against cost: each strategy's Pareto front")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def write_pareto(out: Path, by_budget: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """pareto.json, pareto.md, pareto.png and pareto.svg in ``out``; returns pareto.json's dict."""
    from archgraph.outputs.plots import figure_bytes

    points = collect_points(by_budget)
    atomic_write_json(out / "pareto.json", points)
    atomic_write_text(out / "pareto.md", pareto_markdown(points))
    for fmt, data in zip(("png", "svg"), figure_bytes(pareto_figure(points), dpi=120, tight=True)):
        atomic_write_bytes(out / f"pareto.{fmt}", data)
    return points


def run_budgets(plan: Plan, out: Path, specs: Sequence[str], run: Callable[..., dict[str, Any]], **kwargs: Any) -> list[tuple[str, dict[str, Any]]]:
    """The study once per budget (``run``: :func:`archgraph.studies.compare.run_compare`) in
    ``out/budgets/<budget>``, then the Pareto outputs when there are two or more; (spec, results) each."""
    by_budget = []
    for spec in specs:
        by_budget.append((spec, run(budget_plan(plan, spec), Path(out) / BUDGETS / budget_slug(spec), **kwargs)))
    if len(by_budget) >= 2:
        write_pareto(Path(out), by_budget)
    return by_budget
