"""Correlation study: does the supernet rank architectures as stand-alone training does?

DCNAS (Table 1, Figure 3) measures, per method, Pearson's rho and Kendall's tau between an
architecture's performance inside the trained supernet (shared weights) and after stand-alone
training, over many architectures; a one-shot method is only as good as that ranking. This module
reproduces the measurement for any strategy of archgraph:

1. **Supernet.** A finished search folder (``archgraph search``; its ``checkpoint.pt``) is loaded
   back: the strategy is rebuilt at its last stage and the supernet gets its trained weights.
2. **Candidates.** The searched (derived) architecture, plus ``N - 1`` architectures of the
   supernet's space chosen to *spread over its quality range*: a pool of uniformly random
   architectures (:func:`archgraph.core.decode.uniform_scores`, seeds ``sample_seed + i``, so every
   strategy draws the same pool) is scored cheaply (1 BN-recalibration batch, the first few
   validation images), and the picks are the pool members nearest to ``N - 1`` evenly spaced
   targets between the lowest and the highest cheap score. Without that spread, random samples bunch
   in the middle of the range and the correlation says little about ranking good against bad.
3. **Supernet score** of each candidate: validation mIoU in the supernet's subnet mode after BN
   recalibration (:func:`archgraph.engine.search.score_subnet`, ``search.bn_recalib_batches`` batches), the
   same measurement as S-mIoU.
4. **Stand-alone score**: mIoU after short training with one fixed recipe (the config's ``train``
   section) through the run cache (:mod:`archgraph.studies.runcache`), so an architecture that another
   strategy or command already trained with the same recipe and seed is not trained again.
5. **Statistics**: ``scipy.stats.pearsonr`` and ``kendalltau`` (tau-b, which handles ties), with
   percentile bootstrap confidence intervals over resampled architecture pairs (seeded).

``DIR/correlation.json`` holds everything (per architecture: hashes, both scores, params, FLOPs,
cache entry), ``DIR/correlation.{png,svg}`` the scatter plot and ``DIR/correlation.md`` a table.
:func:`correlation_summary` gives ``archgraph compare`` the numbers for its report.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import networkx as nx
import numpy as np
import torch
from torch.utils.data import Subset

from archgraph.core.choices import ChoicePoints, resolve_node
from archgraph.core.compile import CompiledNetwork
from archgraph.config import Config, config_from_dict
from archgraph.errors import CheckpointError, ConfigError, GraphError
from archgraph.core.graph import graph_hash, inputs_of, node_spec, save
from archgraph.io import atomic_write_bytes, atomic_write_json, atomic_write_text

RESULT = "correlation.json"
RESULT_VERSION = 1

OpIdx = dict[str, int]
InputIdx = dict[str, list[int]]


# --------------------------------------------------------------------------------------------------
# statistics


def _finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ConfigError(f"expected a flat list of scores, got shape {arr.shape}")
    return arr


def _rank_statistic(test, x: Sequence[float], y: Sequence[float]) -> float:
    """``test(a, b)[0]``; NaN when either side is constant (no ranking information) or n < 2."""
    a, b = _finite(x), _finite(y)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(test(a, b)[0])


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's rho; NaN when either side is constant or n < 2."""
    from scipy.stats import pearsonr

    return _rank_statistic(pearsonr, x, y)


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties on either side count as in scipy); NaN when a side is constant."""
    from scipy.stats import kendalltau

    return _rank_statistic(kendalltau, x, y)


def p_values(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Two-sided p-values of both statistics (NaN where the statistic is undefined)."""
    from scipy.stats import kendalltau, pearsonr

    a, b = _finite(x), _finite(y)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"pearson": math.nan, "kendall": math.nan}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"pearson": float(pearsonr(a, b)[1]), "kendall": float(kendalltau(a, b)[1])}


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap confidence interval and how many resamples defined the statistic."""

    low: float
    high: float
    level: float
    resamples: int
    valid: int  # resamples in which the statistic was defined (not every side constant)

    def to_dict(self) -> dict[str, Any]:
        return {"low": _json_float(self.low), "high": _json_float(self.high), "level": self.level,
                "resamples": self.resamples, "valid": self.valid}


def bootstrap_ci(x: Sequence[float], y: Sequence[float], statistic: Callable[[Sequence[float], Sequence[float]], float],
                 resamples: int = 1000, level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap CI of ``statistic`` over pairs resampled with replacement.

    Pairs stay pairs (an architecture's two scores are drawn together). Resamples in which the
    statistic is undefined (e.g. the same architecture drawn n times) are dropped and counted; the
    interval is NaN when fewer than 10 remain. The same ``seed`` gives the same interval.
    """
    if resamples < 1:
        raise ConfigError(f"bootstrap resamples must be >= 1, got {resamples}")
    if not 0 < level < 1:
        raise ConfigError(f"the confidence level must be in (0, 1), e.g. 0.95; got {level}")
    a, b = _finite(x), _finite(y)
    if len(a) != len(b):
        raise ConfigError(f"paired scores differ in length: {len(a)} vs {len(b)}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, len(a), len(a))
        v = statistic(a[idx], b[idx])
        if math.isfinite(v):
            values.append(v)
    if len(values) < 10:
        return Interval(math.nan, math.nan, level, resamples, len(values))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(low), float(high), level, resamples, len(values))


def correlation_stats(supernet: Sequence[float], standalone: Sequence[float], resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """rho and tau with p-values and bootstrap CIs, as written to correlation.json."""
    p = p_values(supernet, standalone)
    out: dict[str, Any] = {"n": len(supernet)}
    for name, fn in (("pearson", pearson), ("kendall", kendall)):
        out[name] = {
            "value": _json_float(fn(supernet, standalone)),
            "p_value": _json_float(p[name]),
            "ci": bootstrap_ci(supernet, standalone, fn, resamples, level, seed).to_dict(),
        }
    out["bootstrap"] = {"resamples": resamples, "level": level, "seed": seed, "method": "percentile, pairs resampled with replacement"}
    return out


def _json_float(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


# --------------------------------------------------------------------------------------------------
# the supernet of a finished search


@dataclass
class SearchedSupernet:
    """A finished search loaded back: config, strategy at its last stage, trained supernet, data."""

    run_dir: Path
    cfg: Config
    strategy: Any
    net: CompiledNetwork
    data: Any  # archgraph.engine.search.SearchData
    device: torch.device

    @property
    def choices(self) -> ChoicePoints:
        return self.net.choices

    def score(self, op_idx: OpIdx, input_idx: InputIdx, recalib_batches: int | None = None, val_images: int = 0) -> float:
        """Validation mIoU of one subnet with the shared weights (BN recalibrated; supernet restored).

        ``val_images`` > 0 evaluates the first that many validation images only (the cheap pre-score).
        """
        from archgraph.engine.search import SearchData, score_subnet

        data = self.data
        if val_images and val_images < len(data.val):
            data = SearchData(data.train_a, data.train_b, Subset(data.val, range(val_images)), data.num_classes, data.class_names)
        return score_subnet(self.net, self.strategy.relaxation, op_idx, input_idx, data, self.cfg, self.device, recalib_batches)


def load_searched_supernet(run_dir: str | Path, device: str | None = None) -> SearchedSupernet:
    """Rebuild the supernet of ``run_dir`` (a finished ``archgraph search`` folder) with its weights."""
    import yaml

    from archgraph.engine.checkpoint import load_checkpoint
    from archgraph.configtools import dataclass_from_dict
    from archgraph.core.registry import get_strategy
    from archgraph.engine.search import CHECKPOINT, CHECKPOINT_VERSION, build_search_data
    from archgraph.core.spaces_api import build_space

    run = Path(run_dir)
    if not (run / "config.yaml").is_file() or not (run / CHECKPOINT).is_file():
        raise CheckpointError(f"{run} is not a search run folder (config.yaml and {CHECKPOINT} needed); run `archgraph search --out {run}` first or drop --search-dir")
    if not (run / "final.json").is_file():
        raise CheckpointError(f"the search in {run} is not finished (no final.json); finish it with `archgraph search --out {run} --resume`")
    cfg = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()) or {})
    if device is not None:
        cfg.device = device

    def check(state: dict[str, Any]) -> None:
        if state.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"{run / CHECKPOINT} is not a search checkpoint of version {CHECKPOINT_VERSION}")

    state = load_checkpoint(run / CHECKPOINT, check)
    info = get_strategy(cfg.strategy_name)
    params = dataclass_from_dict(info.params, cfg.strategy_params, "strategy")
    strategy = info.cls(build_space(cfg.space_name, cfg.space_params), params, cfg.search, cfg.seed)
    # As a resumed search does: the saved strategy state first (progressive strategies rebuild their
    # stage graph from it), then the stage, then the weights, then the state again.
    strategy.load_state_dict(state["strategy"])
    strategy.begin_stage(state["stage"], None)
    dev = torch.device(cfg.device)
    net = strategy.build_supernet().to(dev)
    try:
        net.load_state_dict(state["net"])
    except RuntimeError:
        raise CheckpointError(f"{run / CHECKPOINT} does not match the supernet its config.yaml builds; the folder was mixed up") from None
    strategy.load_state_dict(state["strategy"])
    net.eval()
    return SearchedSupernet(run, cfg, strategy, net, build_search_data(cfg), dev)


# --------------------------------------------------------------------------------------------------
# candidates


@dataclass
class Candidate:
    """One architecture of the study: the graph, its subnet indices, where it came from, its scores."""

    graph: nx.DiGraph
    op_idx: OpIdx
    input_idx: InputIdx
    source: str  # "derived" or "sample"
    sample_seed: int | None = None
    quick: float | None = None  # cheap supernet score (pool ranking only)
    supernet: float | None = None
    standalone: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return graph_hash(self.graph)


def one_hot_scores(choices: ChoicePoints, op_idx: OpIdx, input_idx: InputIdx) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Scores under which the decoder picks exactly these indices."""
    ops = {c.label: [float(i == op_idx[c.label]) for i in range(len(c.candidates))] for c in choices.ops}
    inputs = {c.label: [float(i in input_idx[c.label]) for i in range(len(c.candidates))] for c in choices.inputs}
    return ops, inputs


def indices_of(choices: ChoicePoints, arch: nx.DiGraph) -> tuple[OpIdx, InputIdx]:
    """The subnet indices of a derived architecture (a node the architecture dropped: first ones).

    Why from the graph and not from the strategy's scores: a strategy may pick its architecture
    after the last checkpoint (SPOS's evolution), so arch.yaml is the only complete record.
    """
    ops: OpIdx = {}
    inputs: InputIdx = {}
    for c in choices.ops:
        op = _node_of(arch, c.node)
        chosen = node_spec(*op).ops[0] if op else None
        ops.setdefault(c.label, c.candidates.index(chosen) if chosen in c.candidates else 0)
    for c in choices.inputs:
        found = _node_of(arch, c.node)
        kept = [c.candidates.index(p) for p in inputs_of(*found) if p in c.candidates] if found else list(range(c.keep))
        inputs.setdefault(c.label, sorted(kept))
    return ops, inputs


def _node_of(arch: nx.DiGraph, qualified: str) -> tuple[nx.DiGraph, str] | None:
    try:
        return resolve_node(arch, qualified)
    except GraphError:  # the architecture dropped the node: its choice does not matter
        return None


def derived_candidate(sup: SearchedSupernet) -> Candidate:
    """The searched architecture (``arch.yaml``) with its subnet indices, checked by decoding them."""
    from archgraph.core.decode import decisions, decode
    from archgraph.core.graph import load

    arch = load(sup.run_dir / "arch.yaml")
    target = graph_hash(arch)
    attempts = [indices_of(sup.choices, arch)]
    ops, inputs = sup.strategy.scores(sup.net)
    if ops or inputs:
        attempts.append(decisions(sup.choices, ops, inputs))
    for op_idx, input_idx in attempts:
        decoded = decode(sup.strategy.graph, *one_hot_scores(sup.choices, op_idx, input_idx))
        if graph_hash(decoded) == target:
            return Candidate(arch, op_idx, input_idx, "derived")
    raise CheckpointError(
        f"{sup.run_dir / 'arch.yaml'} ({target}) is not a subnet of the supernet in {sup.run_dir / 'checkpoint.pt'}; "
        "was arch.yaml replaced after the search?"
    )


def sample_pool(sup: SearchedSupernet, size: int, sample_seed: int, exclude: set[str]) -> list[Candidate]:
    """Up to ``size`` distinct random architectures (seeds ``sample_seed``, ``sample_seed + 1``, ...).

    Duplicates (small spaces) and ``exclude`` hashes are skipped; at most ``4 * size`` draws.
    """
    from archgraph.core.decode import decisions, decode, uniform_scores

    pool: list[Candidate] = []
    seen = set(exclude)
    for i in range(4 * size):
        if len(pool) == size:
            break
        seed = sample_seed + i
        ops, inputs = uniform_scores(sup.choices, seed)
        graph = decode(sup.strategy.graph, ops, inputs)
        h = graph_hash(graph)
        if h in seen:
            continue
        seen.add(h)
        op_idx, input_idx = decisions(sup.choices, ops, inputs)
        pool.append(Candidate(graph, op_idx, input_idx, "sample", seed))
    return pool


def spread_pick(scores: Sequence[float], k: int) -> list[int]:
    """Indices of ``k`` items spread over the range of ``scores``: for ``k`` evenly spaced targets
    from min to max, the unused item nearest to each (ties: the earlier item). Sorted by score."""
    if k <= 0:
        return []
    order = list(range(len(scores)))
    if k >= len(scores):
        return sorted(order, key=lambda i: (scores[i], i))
    lo, hi = min(scores), max(scores)
    targets = [lo + (hi - lo) * j / (k - 1) for j in range(k)] if k > 1 else [(lo + hi) / 2]
    used: list[int] = []
    for t in targets:
        best = min((i for i in order if i not in used), key=lambda i: (abs(scores[i] - t), i))
        used.append(best)
    return sorted(used, key=lambda i: (scores[i], i))


# --------------------------------------------------------------------------------------------------
# the study


@dataclass
class StudyOptions:
    archs: int = 8  # N: architectures in the study, the derived one included
    pool: int = 0  # random architectures pre-scored (0: max(4 N, 16))
    quick_batches: int = 1  # BN-recalibration batches of the cheap pre-score
    quick_val: int = 8  # validation images of the cheap pre-score (0: all)
    sample_seed: int = 0
    train_seed: int | None = None  # stand-alone training seed (None: the config's seed)
    resamples: int = 1000
    level: float = 0.95
    bootstrap_seed: int = 0

    def check(self) -> None:
        if self.archs < 3:
            raise ConfigError(f"--archs {self.archs}: a correlation needs at least 3 architectures (the paper's figure uses dozens)")
        if self.pool and self.pool < self.archs - 1:
            raise ConfigError(f"--pool {self.pool} is smaller than --archs - 1 = {self.archs - 1}; raise --pool or leave it at 0 (automatic)")
        if self.quick_batches < 0 or self.quick_val < 0:
            raise ConfigError("--quick-batches and --quick-val must be >= 0")


def run_study(sup: SearchedSupernet, train_cfg: Config, out: Path, opts: StudyOptions, cache_dir: Path, log: Callable[[str], None] = print, progress: bool = False) -> dict[str, Any]:
    """Candidates, both scores, statistics; write DIR/correlation.{json,md,png,svg} and DIR/archs/."""
    from archgraph.studies.runcache import cache_key, entry_dir, recipe_dict, recipe_hash, trained_metrics

    opts.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    derived = derived_candidate(sup)
    pool_size = opts.pool or max(4 * opts.archs, 16)
    pool = sample_pool(sup, pool_size, opts.sample_seed, {derived.hash})
    if len(pool) < opts.archs - 1:
        raise ConfigError(
            f"the space of {sup.run_dir} has only {len(pool) + 1} distinct architectures within {4 * pool_size} draws; "
            f"lower --archs to {len(pool) + 1} or use a larger space"
        )
    log(f"pre-scoring {len(pool)} random architectures ({opts.quick_batches} BN batch, {opts.quick_val or 'all'} val images)")
    for c in pool:
        c.quick = sup.score(c.op_idx, c.input_idx, recalib_batches=opts.quick_batches, val_images=opts.quick_val)
    t_quick = time.perf_counter() - t0
    picked = [pool[i] for i in spread_pick([c.quick for c in pool], opts.archs - 1)]
    cands = [derived] + picked
    log(f"scoring {len(cands)} architectures with the supernet's weights (BN recalibrated on {sup.cfg.search.bn_recalib_batches} batch(es))")
    for c in cands:
        c.supernet = sup.score(c.op_idx, c.input_idx)
    t_super = time.perf_counter() - t0 - t_quick
    seed = sup.cfg.seed if opts.train_seed is None else opts.train_seed
    arch_dir = out / "archs"
    for i, c in enumerate(cands):
        save(c.graph, arch_dir / f"{c.hash}.yaml")
        log(f"stand-alone {i + 1}/{len(cands)}: {c.hash} ({c.source})")
        c.standalone = trained_metrics(c.graph, train_cfg, seed, cache_dir, progress=progress, log=log)
    t_train = time.perf_counter() - t0 - t_quick - t_super

    xs = [float(c.supernet) for c in cands]
    ys = [float(c.standalone["miou"]) for c in cands]
    stats = correlation_stats(xs, ys, opts.resamples, opts.level, opts.bootstrap_seed)
    quick = [c.quick for c in pool]
    result: dict[str, Any] = {
        "version": RESULT_VERSION,
        "strategy": sup.cfg.strategy_name,
        "space": sup.cfg.space,
        "search_dir": str(sup.run_dir.resolve()),
        **stats,
        "supernet_score": {"what": "val mIoU in the supernet's subnet mode, BN recalibrated", "bn_recalib_batches": sup.cfg.search.bn_recalib_batches,
                           "val_images": len(sup.data.val)},
        "standalone": {"recipe_hash": recipe_hash(train_cfg), "recipe": recipe_dict(train_cfg), "seed": seed, "cache_dir": str(Path(cache_dir).resolve())},
        "pool": {"size": len(pool), "sample_seed": opts.sample_seed, "quick_batches": opts.quick_batches, "quick_val": opts.quick_val,
                 "quick_range": [min(quick), max(quick)]},
        "archs": [
            {
                "arch_hash": c.hash, "source": c.source, "sample_seed": c.sample_seed, "quick_score": c.quick,
                "supernet_miou": c.supernet, "standalone_miou": c.standalone["miou"],
                "standalone_pixel_acc": c.standalone.get("pixel_acc"), "params": c.standalone.get("params"), "flops": c.standalone.get("flops"),
                "file": f"archs/{c.hash}.yaml",
                "cache_entry": str(entry_dir(cache_dir, cache_key(c.graph, train_cfg, seed)).resolve()),
            }
            for c in cands
        ],
        "seconds": {"pre_score": t_quick, "supernet_score": t_super, "standalone": t_train, "total": time.perf_counter() - t0},
    }
    atomic_write_json(out / RESULT, result)
    png, svg = scatter_plot(result)
    atomic_write_bytes(out / "correlation.png", png)
    atomic_write_bytes(out / "correlation.svg", svg)
    atomic_write_text(out / "correlation.md", markdown_table(result))
    return result


# --------------------------------------------------------------------------------------------------
# outputs


def _fmt_stat(s: dict[str, Any]) -> str:
    v, ci = s["value"], s["ci"]
    if v is None:
        return "n/a (a side is constant)"
    band = "" if ci["low"] is None else f" [{ci['low']:.2f}, {ci['high']:.2f}]"
    return f"{v:.3f}{band}"


def scatter_plot(result: dict[str, Any]) -> tuple[bytes, bytes]:
    """(PNG, SVG): supernet mIoU against stand-alone mIoU, the derived architecture marked."""
    from archgraph.outputs.plots import figure_bytes, pyplot

    plt = pyplot()
    archs = result["archs"]
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for source, marker, color, label in (("sample", "o", "#4c72b0", "sampled"), ("derived", "*", "#dd4444", "derived (searched)")):
        pts = [(a["supernet_miou"], a["standalone_miou"]) for a in archs if a["source"] == source]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, s=120 if marker == "*" else 36, color=color, label=label, zorder=3)
    level = int(round(result["pearson"]["ci"]["level"] * 100))
    ax.set_title(f"{result['strategy']}: rho {_fmt_stat(result['pearson'])}, tau {_fmt_stat(result['kendall'])}\n(n={result['n']}, {level}% bootstrap CI)", fontsize=9)
    ax.set_xlabel("supernet mIoU (shared weights, BN recalibrated)")
    ax.set_ylabel("stand-alone mIoU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return figure_bytes(fig)


def markdown_table(result: dict[str, Any]) -> str:
    level = int(round(result["pearson"]["ci"]["level"] * 100))
    lines = [
        f"# Correlation study: {result['strategy']}",
        "",
        f"Search: `{result['search_dir']}`; {result['n']} architectures; stand-alone recipe `{result['standalone']['recipe_hash']}` "
        f"(seed {result['standalone']['seed']}, {result['standalone']['recipe']['train']['epochs']} epochs).",
        "",
        f"| statistic | value [{level}% CI] | p-value |",
        "|---|---|---|",
    ]
    for name, title in (("pearson", "Pearson rho"), ("kendall", "Kendall tau-b")):
        s = result[name]
        p = "-" if s["p_value"] is None else f"{s['p_value']:.3g}"
        lines.append(f"| {title} | {_fmt_stat(s)} | {p} |")
    lines += ["", "| # | architecture | source | supernet mIoU | stand-alone mIoU | params | pre-score |", "|---|---|---|---|---|---|---|"]
    for i, a in enumerate(sorted(result["archs"], key=lambda a: -a["standalone_miou"]), 1):
        params = "-" if a["params"] is None else f"{a['params']:,}"
        quick = "-" if a["quick_score"] is None else f"{a['quick_score']:.4f}"
        lines.append(f"| {i} | [`{a['arch_hash']}`]({a['file']}) | {a['source']} | {a['supernet_miou']:.4f} | {a['standalone_miou']:.4f} | {params} | {quick} |")
    lines += ["", "![scatter](correlation.png)", ""]
    return "\n".join(lines)


def correlation_summary(path: str | Path) -> dict[str, Any]:
    """The numbers ``archgraph compare`` shows for one strategy; ``{}`` when no study exists.

    ``path`` is a correlate folder (``archgraph correlate --out DIR``), a ``correlation.json``, or a
    search run folder: then ``RUN/correlation.json`` or, when the search ran inside a correlate folder
    (``DIR/search``), ``DIR/correlation.json`` are used if their ``search_dir`` is that run.
    Keys: ``strategy``, ``n``, ``pearson``, ``pearson_low``, ``pearson_high``, ``kendall``,
    ``kendall_low``, ``kendall_high`` (floats or None), ``level``, ``path``.
    """
    p = Path(path)
    candidates = [p] if p.suffix == ".json" else [p / RESULT, p.parent / RESULT]
    for file in candidates:
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text())
        except (json.JSONDecodeError, OSError):
            continue
        if not isinstance(data, dict) or data.get("version") != RESULT_VERSION:
            continue
        if file == p.parent / RESULT and p.is_dir() and Path(data.get("search_dir", "")) != p.resolve():
            continue  # a sibling study of another search
        return {
            "strategy": data["strategy"], "n": data["n"],
            "pearson": data["pearson"]["value"], "pearson_low": data["pearson"]["ci"]["low"], "pearson_high": data["pearson"]["ci"]["high"],
            "kendall": data["kendall"]["value"], "kendall_low": data["kendall"]["ci"]["low"], "kendall_high": data["kendall"]["ci"]["high"],
            "level": data["pearson"]["ci"]["level"], "path": str(file),
        }
    return {}
