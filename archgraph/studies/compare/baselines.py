"""The baselines' architectures: the presets of the config's space, and random architectures of the space.

Random architectures are drawn uniformly (:func:`archgraph.core.decode.sample_architecture`),
distinct by :func:`graph_hash`, optionally only within a FLOPs band around a reference
(``--flops-band``, ``--flops-reference``), and within ``search.cost_limit`` when the study has a budget
(:func:`budget_accept`). :func:`baseline_arch` gives the architecture one baseline
run trains and keeps it in the run's folder, so a resumed comparison trains the same one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import networkx as nx

from archgraph.builders import space_for_training
from archgraph.config import Config
from archgraph.core.graph import graph_hash, save
from archgraph.core.graph import load as load_graph
from archgraph.errors import ConfigError
from archgraph.studies.compare.plan import Plan, Run, entry_slug, random_run


def architecture_flops(graph: nx.DiGraph, image_hw: tuple[int, int]) -> int:
    """FLOPs of ``graph``'s network on one image of ``image_hw``."""
    from archgraph.core.compile import compile_graph
    from archgraph.core.costs import model_flops

    return model_flops(compile_graph(graph), image_hw)


def architecture_cost(graph: nx.DiGraph, cfg: Config) -> dict[str, Any]:
    """The cost of ``graph`` under ``cfg``'s ``search.cost_limit``: measured on the network compiled
    alone (latency timed at the budget's resolution on ``cfg.device``; FLOPs, parameters counted)."""
    from archgraph.core.costbudget import measured_cost, resolution_of
    from archgraph.core.costmodel import parse_cost_limit

    limit = parse_cost_limit(str(cfg.search.cost_limit))
    resolution = resolution_of(limit, cfg.data.crop)
    measured = measured_cost(graph, limit, resolution, cfg.device)
    unit = {"latency": "ms", "flops": "GFLOP", "params": "M"}[limit.metric]
    return {"limit": cfg.search.cost_limit, "metric": limit.metric, "unit": unit, "resolution": list(resolution), "measured": measured, "within_budget": bool(measured <= float(limit.value))}


def budget_accept(space: nx.DiGraph, cfg: Config) -> Callable[[nx.DiGraph], bool] | None:
    """``search.cost_limit`` as a filter on random architectures (the cost model's prediction, the
    same check SPOS and rsws apply), or None without a budget."""
    if not cfg.search.cost_limit:
        return None
    from archgraph.core.costbudget import make_budget

    budget = make_budget(space, cfg.search.cost_limit, cfg.data.crop, cfg.device, cfg.search.cost_table)
    return lambda arch: float(budget.model.of_graph(arch)) <= budget.value


def random_architectures(
    space: nx.DiGraph,
    count: int,
    seed: int = 0,
    image_hw: tuple[int, int] = (64, 64),
    band: float | None = None,
    reference_flops: float | None = None,
    max_tries: int | None = None,
    accept: Callable[[nx.DiGraph], bool] | None = None,
) -> list[tuple[int, nx.DiGraph]]:
    """``count`` distinct architectures drawn uniformly from ``space`` (:func:`sample_architecture`),
    as ``(sample seed, architecture)``.

    With ``band`` and ``reference_flops``, rejection sampling keeps only architectures whose FLOPs
    at ``image_hw`` are within ``reference * (1 +- band)``: uniform over the space restricted to the
    band. Duplicates (same :func:`graph_hash`) are redrawn, so a tiny space may run out of draws:
    after ``max_tries`` (default ``200 * count``) a :class:`ConfigError` says so. ``accept``: a hard
    constraint (``search.cost_limit``, :func:`budget_accept`); refused architectures are redrawn.
    """
    from archgraph.core.decode import sample_architecture

    if band is not None and (band <= 0 or reference_flops is None):
        raise ConfigError("--flops-band needs a positive fraction (e.g. 0.25) and a reference (--flops-reference)")
    if count <= 0:
        return []
    tries = max_tries or 200 * count
    found: list[tuple[int, nx.DiGraph]] = []
    hashes: set[str] = set()
    for t in range(tries):
        sample_seed = seed * 100_003 + t
        arch = sample_architecture(space, sample_seed)
        h = graph_hash(arch)
        if h in hashes:
            continue
        if band is not None:
            flops = architecture_flops(arch, image_hw)
            if abs(flops - reference_flops) > band * reference_flops:
                continue
        if accept is not None and not accept(arch):
            continue
        hashes.add(h)
        arch.graph["name"] = f"{space.graph.get('name')}-random-{sample_seed}"
        found.append((sample_seed, arch))
        if len(found) == count:
            return found
    within = f" with FLOPs within +-{band:.0%} of {reference_flops:.3g}" if band is not None else ""
    within += " within search.cost_limit (raise it)" if accept is not None else ""
    raise ConfigError(f"drew only {len(found)} distinct architectures{within} in {tries} tries, {count} asked; widen --flops-band, ask for fewer (random:N) or use a larger space")


def reference_kind(ref: str, plan: Plan, space: str) -> str:
    """What ``--flops-reference`` names: ``"preset"`` (of ``space``, the config's space), ``"strategy"``
    (an entry of this compare) or ``"file"`` (an arch.yaml). Otherwise a one-line :class:`ConfigError`
    naming the compare's strategies and ``space``'s presets, with the closest one (checked before any work)."""
    from archgraph.core.registry import unknown_preset
    from archgraph.core.spaces_api import preset_names

    if ref in preset_names(space):
        return "preset"
    if ref in plan.strategies:
        return "strategy"
    if Path(ref).is_file():
        return "file"
    raise ConfigError(f"--flops-reference {ref!r}: not a strategy of this compare ({', '.join(plan.strategies)}), not an architecture file, and {unknown_preset(space, ref)}")


def reference_flops(plan: Plan, out: Path, space: nx.DiGraph, crop: tuple[int, int]) -> float:
    """FLOPs of ``--flops-reference``: a preset of the space, a strategy of this compare (first seed), or a YAML."""
    from archgraph.core.spaces_api import build_preset

    ref = plan.flops_reference
    if not ref:
        raise ConfigError("--flops-band needs --flops-reference: a preset of the space (`archgraph spaces` lists them), a strategy of this compare (dcnas) or an arch.yaml")
    kind = reference_kind(ref, plan, str(space.graph.get("space")))
    if kind == "preset":
        graph = build_preset(ref, space)
    elif kind == "strategy":
        path = out / "runs" / entry_slug(ref) / f"seed{plan.seeds[0]}" / "search" / "arch.yaml"
        if not path.is_file():
            raise ConfigError(f"--flops-reference {ref}: its search ({path.parent}) has not finished, so its FLOPs are unknown")
        graph = load_graph(path)
    else:
        graph = load_graph(ref)
    return float(architecture_flops(graph, crop))


def baseline_arch(plan: Plan, out: Path, run: Run, cfg: Config) -> nx.DiGraph:
    """The architecture a baseline run trains, saved as ``folder/arch.yaml`` (reused on resume)."""
    path = run.folder / "arch.yaml"
    if path.is_file():
        return load_graph(path)
    if run.kind == "preset":
        from archgraph.core.spaces_api import build_preset

        arch = build_preset(run.entry.split(":", 1)[1], space_for_training(cfg))
        save(arch, path)
        return arch
    # Random: sample all of them at once (the band needs the reference), save each to its folders.
    base = next(b for b in plan.baselines if b.kind == "random")
    space = space_for_training(cfg)
    crop = tuple(plan.base.data.crop)
    ref = reference_flops(plan, out, space, crop) if plan.flops_band else None
    archs = random_architectures(space, base.count, plan.base.seed, crop, plan.flops_band, ref, accept=budget_accept(space, plan.base))
    for i, (sample_seed, arch) in enumerate(archs):
        arch.graph["sample_seed"] = sample_seed
        target = random_run(plan, out, i)[1] / "arch.yaml"
        if not target.is_file():
            save(arch, target)
    return load_graph(path)
