"""``archgraph compare``: strategies head to head, against hand-designed and random baselines.

For every strategy and seed the comparison searches (:func:`archgraph.engine.search.run_search` with the
config, ``strategy.name`` and ``seed`` set) and then trains the derived architecture stand-alone with
the config's ``train`` section; every baseline (the DCSS presets of :mod:`archgraph.spaces.dcss_presets`,
architectures drawn uniformly from the space) is trained the same way. One recipe and one data
setting for everything is what makes the T-mIoU column comparable.

All stand-alone training goes through the run cache (:mod:`archgraph.studies.runcache`): an architecture
trained with the same recipe and seed is trained once, whichever entry (or earlier compare, or
``archgraph correlate``) asked for it first.

Folder ``DIR`` (``--out``)::

    compare.json                        the plan: base config, strategies, seeds, baselines
    runs/<entry>/seed<k>/search/        a search run folder (final.json when finished)
    runs/<entry>/seed<k>/search_cost.json   wall time and peak memory of the search sessions
    runs/<entry>/seed<k>/metrics.json   the stand-alone result (a copy of the cache entry's)
    runs/<entry>/seed<k>/arch.yaml      the trained architecture (presets, random baselines)
    results.json results.md             per entry: S-mIoU, T-mIoU (mean, std over runs), cost, size
    tmiou.{png,svg} tmiou_vs_cost.{png,svg}   the plots
    topologies/<entry>.svg              each entry's architecture (first run), drawn alike
    report.html                         one self-contained page tying it together

**Resume.** Running the same command again skips every finished run (a search with final.json, a
training with metrics.json), resumes an unfinished search from its checkpoint
(``run_search(resume=True)``) and an unfinished training from its last epoch (the cache). The base
config must be the same; strategies, seeds and baselines may be added.

**Measured cost.** ``search_seconds`` is the wall time of :func:`run_search` summed over the
sessions of a run (setup, data, epochs, S-mIoU evaluations, end-of-search hooks such as SPOS's
evolution). ``peak_mem_mb`` is the peak GPU memory allocated on CUDA; on the CPU it is the peak
resident set size of this process *during the search*, measured by resetting the kernel's
high-water mark before it (``/proc/self/clear_refs``), so it includes the process's baseline (torch
and the datasets, the same for every entry) but no earlier run. Where that reset is not available
the search log's ``peak_mem_mb`` (process-wide peak) is used and ``peak_mem_source`` says so.
"""

from __future__ import annotations

import html
import json
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import networkx as nx

from archgraph.builders import space_for_training
from archgraph.config import Config, config_from_dict
from archgraph.errors import ArchgraphError, ConfigError
from archgraph.core.graph import graph_hash, save
from archgraph.core.graph import load as load_graph
from archgraph.io import atomic_write_bytes, atomic_write_json, atomic_write_text

FORMAT = "archgraph/compare-v1"
DEFAULT_STRATEGIES = ("dcnas", "pc_darts", "proxylessnas", "p_darts", "spos")
PLAN = "compare.json"


# --------------------------------------------------------------------------------------------------
# the plan


@dataclass(frozen=True)
class Baseline:
    """``preset`` (``name`` = a DCSS preset) or ``random`` (``count`` architectures of the space)."""

    kind: str
    name: str = ""
    count: int = 0

    @property
    def entry(self) -> str:
        return f"preset:{self.name}" if self.kind == "preset" else "random"


@dataclass
class Plan:
    base: Config  # config file + --set: data, search and train sections shared by every run
    strategies: list[str]
    seeds: list[int]
    baselines: list[Baseline] = field(default_factory=list)
    flops_band: float | None = None  # random baselines: keep FLOPs within +-band of the reference
    flops_reference: str | None = None  # a preset name, a strategy of the plan (its first seed), or a YAML
    cache_dir: Path | None = None  # the run cache (None: archgraph.studies.runcache.default_cache_dir())
    strategy_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # --strategy-set NAME.key=value

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "config": self.base.to_dict(), "strategies": self.strategies, "seeds": self.seeds,
            "baselines": [b.__dict__ for b in self.baselines], "flops_band": self.flops_band,
            "flops_reference": self.flops_reference, "strategy_options": self.strategy_options,
        }


def parse_strategies(text: str) -> list[str]:
    from archgraph.core.registry import get_strategy

    names = [s.strip() for s in str(text).split(",") if s.strip()]
    if not names:
        raise ConfigError("--strategies is empty; name at least one, e.g. --strategies dcnas,pc_darts")
    for n in names:
        get_strategy(n)  # ConfigError naming the registered strategies
    if len(set(names)) != len(names):
        raise ConfigError(f"--strategies {text!r} names a strategy twice")
    return names


def parse_seeds(text: str | int, base_seed: int = 0) -> list[int]:
    """``3`` -> three seeds from the config's seed on; ``0,4,7`` -> exactly these."""
    raw = str(text).strip()
    try:
        if "," in raw:
            seeds = [int(s) for s in raw.split(",") if s.strip()]
        else:
            n = int(raw)
            if n < 1:
                raise ValueError
            seeds = [base_seed + i for i in range(n)]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give a count (--seeds 3) or a list (--seeds 0,1,2)") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r}: give distinct seeds")
    return seeds


def parse_baselines(text: str | None, space: str = "dcss") -> list[Baseline]:
    """``presets`` (all of ``space``'s), ``preset:NAME`` or a bare preset name, ``random:N``;
    comma-separated; ``none``."""
    from archgraph.core.registry import get_preset
    from archgraph.core.spaces_api import preset_names

    out: list[Baseline] = []
    for item in (s.strip() for s in str(text or "").split(",")):
        if not item or item == "none":
            continue
        if item == "presets":
            out += [Baseline("preset", n) for n in preset_names(space)]
        elif item.startswith("random"):
            _, _, count = item.partition(":")
            try:
                n = int(count or 5)
                if n < 1:
                    raise ValueError
            except ValueError:
                raise ConfigError(f"--baselines item {item!r}: write random:N with N >= 1, e.g. random:5") from None
            out.append(Baseline("random", count=n))
        else:
            name = item.split(":", 1)[1] if item.startswith("preset:") else item
            get_preset(space, name)  # ConfigError listing the presets
            out.append(Baseline("preset", name))
    seen: set[str] = set()
    unique = [b for b in out if not (b.entry in seen or seen.add(b.entry))]
    return unique


def parse_strategy_options(items: list[str], strategies: list[str]) -> dict[str, dict[str, Any]]:
    """``["spos.population=8", "dcnas.paths=2"]`` -> per-strategy option overrides (values as YAML).

    Each is checked against that strategy's options now, so a typo fails before any run starts."""
    from archgraph.config import parse_overrides
    from archgraph.configtools import dataclass_from_dict
    from archgraph.core.registry import get_strategy

    options: dict[str, dict[str, Any]] = {}
    for name, values in parse_overrides(items).items():
        if name not in strategies:
            raise ConfigError(f"--strategy-set {name}.*: {name!r} is not one of --strategies ({', '.join(strategies)})")
        if not isinstance(values, dict):
            raise ConfigError(f"--strategy-set {name}={values!r}: write NAME.key=value, e.g. spos.population=8")
        dataclass_from_dict(get_strategy(name).params, values, "strategy")
        options[name] = values
    return options


def run_config(base: Config, seed: int, strategy: str | None = None, options: dict[str, dict[str, Any]] | None = None) -> Config:
    """The config of one run: ``base`` with ``seed`` and, for a search, ``strategy.name``.

    The base config's strategy options apply only to the strategy it names; every other strategy
    runs with its own defaults (their papers' settings), plus what ``--strategy-set`` gives it."""
    data = base.to_dict()
    data["seed"] = seed
    if strategy is not None and strategy != base.strategy_name:
        data["strategy"] = {"name": strategy}
    if strategy is not None and options and strategy in options:
        data["strategy"] = {**data["strategy"], **options[strategy]}
    return config_from_dict(data)


# --------------------------------------------------------------------------------------------------
# one search, one training: the two kinds of work


def _reset_peak_memory(device) -> bool:
    """Start a fresh peak-memory window; ``False`` when this platform cannot."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the resident-set high-water mark (Linux >= 4.0)
        return True
    except OSError:
        return False


def _peak_memory_mb(device) -> float | None:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def search_run(cfg: Config, folder: Path, progress: bool = False) -> dict[str, Any]:
    """Search in ``folder/search`` unless finished; return final.json plus the measured cost.

    An unfinished search (a checkpoint, no final.json) resumes with its saved config."""
    import torch

    from archgraph.engine.checkpoint import has_checkpoint
    from archgraph.engine.search import CHECKPOINT, prepare_config, run_search

    out = folder / "search"
    cost_file = folder / "search_cost.json"
    cost = json.loads(cost_file.read_text()) if cost_file.is_file() else {"sessions": []}
    if not (out / "final.json").is_file():
        resume = has_checkpoint(out / CHECKPOINT)
        run_cfg = prepare_config(None, [], out, True) if resume else cfg
        device = torch.device(run_cfg.device)
        window = _reset_peak_memory(device)
        t0 = time.perf_counter()
        finished = False
        try:
            run_search(run_cfg, out, resume=resume, progress=progress)
            finished = True
        finally:  # an interrupted session still counts towards the search's cost
            peak = _peak_memory_mb(device) if window else None
            cost["sessions"].append({"seconds": time.perf_counter() - t0, "peak_mem_mb": peak, "resumed": resume, "finished": finished})
            atomic_write_json(cost_file, cost)
    final = json.loads((out / "final.json").read_text())
    sessions = cost["sessions"]
    peaks = [s["peak_mem_mb"] for s in sessions if s.get("peak_mem_mb") is not None]
    log_peak = [r.get("peak_mem_mb") for r in _jsonl(out / "search.jsonl") if r.get("peak_mem_mb") is not None]
    if sessions:
        seconds = sum(s["seconds"] for s in sessions)
    else:  # a search run made outside compare: the epochs' own times
        seconds = sum(r.get("seconds", 0.0) for r in _jsonl(out / "search.jsonl"))
    return {
        "s_miou": final.get("s_miou"),
        "arch_hash": final.get("arch_hash"),
        "search_seconds": seconds,
        "peak_mem_mb": max(peaks) if peaks else (max(log_peak) if log_peak else None),
        "peak_mem_source": ("cuda" if cfg.device.startswith("cuda") else "rss-window") if peaks else "search.jsonl",
        "epochs": len(_jsonl(out / "search.jsonl")),
    }


def train_architecture(cfg: Config, graph: nx.DiGraph, folder: Path, cache_dir: Path | None, progress: bool = False) -> dict[str, Any]:
    """Stand-alone metrics of ``graph`` with ``cfg``'s recipe and seed: ``folder/metrics.json`` if
    this run finished before, else from the run cache (which trains, or resumes, only when needed)."""
    from archgraph.studies.runcache import cache_key, default_cache_dir, entry_dir, trained_metrics

    done = folder / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    metrics = dict(trained_metrics(graph, cfg, cfg.seed, cache, progress=progress))
    metrics["cache_entry"] = str(entry_dir(cache, cache_key(graph, cfg, cfg.seed)).resolve())
    atomic_write_json(done, metrics)
    return metrics


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


# --------------------------------------------------------------------------------------------------
# baselines


def architecture_flops(graph: nx.DiGraph, image_hw: tuple[int, int]) -> int:
    from archgraph.core.compile import compile_graph
    from archgraph.core.costs import model_flops

    return model_flops(compile_graph(graph), image_hw)


def random_architectures(space: nx.DiGraph, count: int, seed: int = 0, image_hw: tuple[int, int] = (64, 64),
                         band: float | None = None, reference_flops: float | None = None,
                         max_tries: int | None = None) -> list[tuple[int, nx.DiGraph]]:
    """``count`` distinct architectures drawn uniformly from ``space`` (:func:`sample_architecture`),
    as ``(sample seed, architecture)``.

    With ``band`` and ``reference_flops``, rejection sampling keeps only architectures whose FLOPs
    at ``image_hw`` are within ``reference * (1 +- band)``: uniform over the space restricted to the
    band. Duplicates (same :func:`graph_hash`) are redrawn, so a tiny space may run out of draws:
    after ``max_tries`` (default ``200 * count``) a :class:`ConfigError` says so.
    """
    from archgraph.core.decode import sample_architecture

    if band is not None and (band <= 0 or reference_flops is None):
        raise ConfigError("--flops-band needs a positive fraction (e.g. 0.25) and a reference (--flops-reference)")
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
        hashes.add(h)
        arch.graph["name"] = f"{space.graph.get('name')}-random-{sample_seed}"
        found.append((sample_seed, arch))
        if len(found) == count:
            return found
    within = f" with FLOPs within +-{band:.0%} of {reference_flops:.3g}" if band is not None else ""
    raise ConfigError(f"drew only {len(found)} distinct architectures{within} in {tries} tries, {count} asked; "
                      "widen --flops-band, ask for fewer (random:N) or use a larger space")


# --------------------------------------------------------------------------------------------------
# the runs and their live table


@dataclass
class Run:
    """One unit of the comparison: a search + training, or the training of a baseline."""

    entry: str  # "dcnas", "preset:hrnet", "random"
    kind: str  # strategy | preset | random
    seed: int
    folder: Path
    label: str  # a row label: "dcnas s0", "random #2 s1"
    status: str = "pending"  # pending | search | train | done | failed
    result: dict[str, Any] = field(default_factory=dict)
    started: float | None = None
    error: str | None = None
    train_log: Path | None = None  # the cache entry's train.jsonl, for the live table


def _slug(entry: str) -> str:
    return entry.replace(":", "-")


class LiveTable:
    """A rich renderable rebuilt on every refresh: status, epochs done (read from the run's logs),
    S-mIoU, T-mIoU and time of every run."""

    def __init__(self, runs: list[Run], plan: Plan):
        self.runs = runs
        self.plan = plan

    def _epochs(self, run: Run) -> str:
        if run.status == "search":
            done = len(_jsonl(run.folder / "search" / "search.jsonl"))
            return f"search epoch {done}"
        if run.status == "train":
            done = len(_jsonl(run.train_log)) if run.train_log else 0
            return f"train epoch {done}/{self.plan.base.train.epochs}"
        return ""

    def __rich__(self):
        from rich.table import Table

        table = Table(title=f"archgraph compare: {sum(r.status == 'done' for r in self.runs)}/{len(self.runs)} runs done")
        for col in ("run", "status", "progress", "S-mIoU", "T-mIoU", "search s", "time"):
            table.add_column(col, justify="right" if col in ("S-mIoU", "T-mIoU", "search s", "time") else "left")
        colours = {"done": "green", "failed": "red", "search": "yellow", "train": "cyan", "pending": "dim"}
        for r in self.runs:
            elapsed = f"{time.perf_counter() - r.started:.0f}s" if r.started and r.status in ("search", "train") else ""
            res = r.result
            table.add_row(
                r.label, f"[{colours.get(r.status, 'white')}]{r.status}[/]", r.error or self._epochs(r),
                _f(res.get("s_miou")), _f(res.get("t_miou")), _f(res.get("search_seconds"), "{:.0f}"), elapsed,
            )
        return table


def _f(v: Any, fmt: str = "{:.4f}") -> str:
    return "" if v is None else fmt.format(v)


def plan_runs(plan: Plan, out: Path) -> list[Run]:
    runs = [Run(s, "strategy", seed, out / "runs" / s / f"seed{seed}", f"{s} s{seed}") for seed in plan.seeds for s in plan.strategies]
    for b in plan.baselines:
        if b.kind == "preset":
            runs += [Run(b.entry, "preset", seed, out / "runs" / _slug(b.entry) / f"seed{seed}", f"{b.name} (preset) s{seed}") for seed in plan.seeds]
        else:  # random architecture i is trained once, with the seeds taken in turn
            for i in range(b.count):
                seed = plan.seeds[i % len(plan.seeds)]
                runs.append(Run("random", "random", seed, out / "runs" / f"random-{i}" / f"seed{seed}", f"random #{i} s{seed}"))
    return runs


def check_plan(plan: Plan, out: Path) -> None:
    """A compare folder keeps its base config: resuming with another would mix incomparable runs."""
    path = out / PLAN
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("config") != plan.base.to_dict() or saved.get("strategy_options", {}) != plan.strategy_options:
            raise ConfigError(f"{out} holds a comparison made with another config; rerun with the same config and --set "
                              "values and --strategy-set options (see its compare.json), or choose another --out")
    atomic_write_json(path, plan.to_dict())


# --------------------------------------------------------------------------------------------------
# the comparison


SearchFn = Callable[[Config, Path, bool], dict[str, Any]]
TrainFn = Callable[[Config, nx.DiGraph, Path, "Path | None", bool], dict[str, Any]]


def run_compare(plan: Plan, out: Path, progress: bool = True, log: Callable[[str], None] = print,
                search_fn: SearchFn | None = None, train_fn: TrainFn | None = None) -> dict[str, Any]:
    """Run (or resume) every run of ``plan`` in ``out``, write the results and the report; return
    results.json's dict. A run that fails is reported and the others go on.

    ``search_fn`` / ``train_fn`` default to :func:`search_run` / :func:`train_architecture` (looked
    up when called, so tests and tools can substitute them)."""
    search_fn = search_fn or search_run
    train_fn = train_fn or train_architecture
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_plan(plan, out)
    runs = plan_runs(plan, out)
    live = None
    stop = _TermAsInterrupt()
    if progress:
        from rich.live import Live

        live = Live(LiveTable(runs, plan), refresh_per_second=1, transient=False)
        live.start()
    try:
        with stop:
            _execute(plan, out, runs, log if not progress else (lambda msg: None), search_fn, train_fn)
    finally:
        if live is not None:
            live.refresh()
            live.stop()
    results = collect_results(plan, out, runs)
    write_outputs(out, results)
    return results


class _TermAsInterrupt:
    """SIGTERM (a batch scheduler's preemption, ``timeout``) raises KeyboardInterrupt like Ctrl-C, so the
    interrupted search session's time and memory are still recorded before the process ends."""

    def __enter__(self) -> "_TermAsInterrupt":
        import signal

        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame) -> None:
        raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _execute(plan: Plan, out: Path, runs: list[Run], log, search_fn: SearchFn, train_fn: TrainFn) -> None:
    from archgraph.studies.runcache import cache_key, default_cache_dir, entry_dir

    cache = plan.cache_dir if plan.cache_dir is not None else default_cache_dir()
    for run in runs:
        run.started = time.perf_counter()
        cfg = run_config(plan.base, run.seed, run.entry if run.kind == "strategy" else None, plan.strategy_options)
        try:
            if run.kind == "strategy":
                run.status = "search"
                log(f"[{run.label}] search -> {run.folder / 'search'}")
                run.result.update(search_fn(cfg, run.folder, False))
                graph = load_graph(run.folder / "search" / "arch.yaml")
            else:
                graph = _baseline_arch(plan, out, run, cfg)
            run.status = "train"
            run.train_log = entry_dir(cache, cache_key(graph, cfg, cfg.seed)) / "train.jsonl"
            log(f"[{run.label}] train {graph_hash(graph)}")
            metrics = train_fn(cfg, graph, run.folder, plan.cache_dir, False)
            run.result.update(_train_summary(metrics, graph))
            run.status = "done"
            log(f"[{run.label}] done: T-mIoU {run.result['t_miou']:.4f}")
        except ArchgraphError as exc:
            run.status, run.error = "failed", str(exc)
            log(f"[{run.label}] failed: {exc}")


def _train_summary(metrics: dict[str, Any], graph: nx.DiGraph) -> dict[str, Any]:
    return {
        "t_miou": metrics["miou"], "pixel_acc": metrics.get("pixel_acc"), "params": metrics.get("params"),
        "flops": metrics.get("flops"), "flops_input": metrics.get("flops_input"), "arch_hash": graph_hash(graph),
        "cache_entry": metrics.get("cache_entry"),
    }


def _baseline_arch(plan: Plan, out: Path, run: Run, cfg: Config) -> nx.DiGraph:
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
    archs = random_architectures(space, base.count, plan.base.seed, crop, plan.flops_band, ref)
    for i, (sample_seed, arch) in enumerate(archs):
        seed = plan.seeds[i % len(plan.seeds)]
        arch.graph["sample_seed"] = sample_seed
        target = out / "runs" / f"random-{i}" / f"seed{seed}" / "arch.yaml"
        if not target.is_file():
            save(arch, target)
    return load_graph(path)


def reference_flops(plan: Plan, out: Path, space: nx.DiGraph, crop: tuple[int, int]) -> float:
    """FLOPs of ``--flops-reference``: a preset, a strategy of this compare (first seed), or a YAML."""
    from archgraph.core.spaces_api import build_preset, preset_names

    ref = plan.flops_reference
    if not ref:
        raise ConfigError("--flops-band needs --flops-reference: a preset (hrnet), a strategy of this compare (dcnas) or an arch.yaml")
    if ref in preset_names(str(space.graph.get("space"))):
        graph = build_preset(ref, space)
    elif ref in plan.strategies:
        path = out / "runs" / ref / f"seed{plan.seeds[0]}" / "search" / "arch.yaml"
        if not path.is_file():
            raise ConfigError(f"--flops-reference {ref}: its search ({path.parent}) has not finished, so its FLOPs are unknown")
        graph = load_graph(path)
    elif Path(ref).is_file():
        graph = load_graph(ref)
    else:
        raise ConfigError(f"--flops-reference {ref!r} is neither a preset, a strategy of this compare nor an architecture file")
    return float(architecture_flops(graph, crop))


# --------------------------------------------------------------------------------------------------
# results


def _mean_std(values: Iterable[Any]) -> tuple[float | None, float | None]:
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def collect_results(plan: Plan, out: Path, runs: list[Run]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    order = list(dict.fromkeys(r.entry for r in runs))
    for name in order:
        mine = [r for r in runs if r.entry == name]
        done = [r for r in mine if r.status == "done"]
        rows = []
        for r in mine:
            row = {"seed": r.seed, "status": r.status, "folder": str(r.folder.relative_to(out)), **r.result}
            if r.error:
                row["error"] = r.error
            rows.append(row)
        summary: dict[str, Any] = {"runs": len(mine), "finished": len(done), "distinct_archs": len({r.result.get("arch_hash") for r in done})}
        for key in ("t_miou", "s_miou", "search_seconds", "peak_mem_mb", "params", "flops"):
            mean, std = _mean_std(r.result.get(key) for r in done)
            summary[f"{key}_mean"], summary[f"{key}_std"] = mean, std
        entries.append({"name": name, "kind": mine[0].kind, "summary": summary, "runs": rows})
    return {
        "format": FORMAT,
        "plan": plan.to_dict(),
        "entries": entries,
        "notes": {
            "t_miou": "stand-alone mIoU on the validation split after training with the config's train section (mean and sample std over runs)",
            "s_miou": "mIoU of the derived architecture inside the supernet (subnet mode, BN recalibrated) at the end of the search",
            "search_seconds": "wall time of run_search summed over sessions",
            "peak_mem_mb": "CUDA: peak allocated; CPU: peak RSS of the process during the search (includes the process baseline)",
            "random": "one architecture per run; its mean and std are over architectures, not seeds",
        },
    }


def write_outputs(out: Path, results: dict[str, Any]) -> None:
    atomic_write_json(out / "results.json", results)
    plots = write_plots(out, results)
    topologies = write_topologies(out, results)
    atomic_write_text(out / "results.md", results_markdown(results, plots, topologies))
    atomic_write_text(out / "report.html", report_html(out, results, plots, topologies))


def _display(entry: dict[str, Any]) -> str:
    name = entry["name"]
    if entry["kind"] == "preset":
        return f"{name.split(':', 1)[1]} (preset)"
    if entry["kind"] == "random":
        return f"random (n={entry['summary']['runs']})"
    return name


def _pm(mean: float | None, std: float | None, fmt: str = "{:.4f}") -> str:
    if mean is None:
        return "-"
    return fmt.format(mean) + (f" ± {fmt.format(std)}" if std is not None else "")


def _scaled(v: float | None, div: float, fmt: str) -> str:
    return "-" if v is None else fmt.format(v / div)


TABLE_HEAD = ("entry", "runs", "S-mIoU", "T-mIoU", "search time (s)", "peak mem (MB)", "params (M)", "GFLOPs")


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for e in results["entries"]:
        s = e["summary"]
        rows.append([
            _display(e), f"{s['finished']}/{s['runs']}", _pm(s["s_miou_mean"], s["s_miou_std"]), _pm(s["t_miou_mean"], s["t_miou_std"]),
            _pm(s["search_seconds_mean"], s["search_seconds_std"], "{:.0f}"), _scaled(s["peak_mem_mb_mean"], 1, "{:.0f}"),
            _scaled(s["params_mean"], 1e6, "{:.3g}"), _scaled(s["flops_mean"], 1e9, "{:.3g}"),
        ])
    return rows


def results_markdown(results: dict[str, Any], plots: list[str], topologies: dict[str, str]) -> str:
    plan = results["plan"]
    crop = plan["config"]["data"]["crop"]
    lines = [
        "# archgraph compare", "",
        f"Strategies {', '.join(plan['strategies'])}; seeds {', '.join(map(str, plan['seeds']))}; "
        f"data {plan['config']['data']['name']} (crop {crop[0]}x{crop[1]}, scale {plan['config']['data']['scale']}); "
        f"training: {plan['config']['train']['epochs']} epochs. Mean ± sample std over runs; FLOPs at the crop.", "",
        "| " + " | ".join(TABLE_HEAD) + " |", "|" + "---|" * len(TABLE_HEAD),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(results)]
    failed = [(e["name"], r) for e in results["entries"] for r in e["runs"] if r.get("status") == "failed"]
    if failed:
        lines += ["", "Failed runs:", *[f"- {n} seed {r['seed']}: {r.get('error')}" for n, r in failed]]
    lines += ["", "## Plots", *[f"![{p}]({p})" for p in plots if p.endswith(".svg")], "", "## Topologies"]
    lines += [f"- {name}: [{path}]({path})" for name, path in topologies.items()]
    return "\n".join(lines) + "\n"


def write_plots(out: Path, results: dict[str, Any]) -> list[str]:
    """T-mIoU with error bars, and T-mIoU against search cost; PNG and SVG of each."""
    from archgraph.outputs.plots import figure_bytes, pyplot

    plt = pyplot()
    entries = [e for e in results["entries"] if e["summary"]["t_miou_mean"] is not None]
    colour = {"strategy": "#3b75af", "preset": "#e1812c", "random": "#7f7f7f"}
    written: list[str] = []

    def save_fig(fig, stem: str) -> None:
        for fmt, data in zip(("png", "svg"), figure_bytes(fig, dpi=120, tight=True)):
            atomic_write_bytes(out / f"{stem}.{fmt}", data)
            written.append(f"{stem}.{fmt}")

    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(entries) + 1.5), 3.6))
    xs = range(len(entries))
    ax.bar(xs, [e["summary"]["t_miou_mean"] for e in entries], yerr=[e["summary"]["t_miou_std"] or 0 for e in entries],
           color=[colour[e["kind"]] for e in entries], capsize=4)
    ax.set_xticks(list(xs), [_display(e) for e in entries], rotation=30, ha="right")
    ax.set_ylabel("T-mIoU (stand-alone)")
    ax.set_title("stand-alone mIoU, mean ± std over runs")
    ax.grid(axis="y", alpha=0.3)
    save_fig(fig, "tmiou")

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for e in entries:
        s = e["summary"]
        x = s["search_seconds_mean"] or 0.0  # baselines: no search
        ax.errorbar([x], [s["t_miou_mean"]], xerr=[s["search_seconds_std"] or 0], yerr=[s["t_miou_std"] or 0],
                    fmt="o" if e["kind"] == "strategy" else "s", color=colour[e["kind"]], capsize=3)
        ax.annotate(_display(e), (x, s["t_miou_mean"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("search wall time (s); baselines at 0")
    ax.set_ylabel("T-mIoU (stand-alone)")
    ax.set_title("accuracy against search cost")
    ax.grid(alpha=0.3)
    save_fig(fig, "tmiou_vs_cost")
    return written


def _entry_arch(out: Path, entry: dict[str, Any]) -> Path | None:
    for r in entry["runs"]:
        folder = out / r["folder"]
        for path in (folder / "search" / "arch.yaml", folder / "arch.yaml"):
            if path.is_file():
                return path
    return None


def write_topologies(out: Path, results: dict[str, Any]) -> dict[str, str]:
    """Every entry's architecture (its first run) drawn on the same layer x scale grid."""
    from archgraph.outputs.render import render

    drawn: dict[str, str] = {}
    for e in results["entries"]:
        path = _entry_arch(out, e)
        if path is None:
            continue
        result = render(load_graph(path), out / "topologies" / f"{_slug(e['name'])}.svg", title=_display(e))
        drawn[_display(e)] = str(result.path.relative_to(out))
    return drawn


def _inline_svg(path: Path) -> str:
    if path.suffix != ".svg" or not path.is_file():
        return f"<p><em>{html.escape(path.name)}: no picture (install Graphviz to draw it)</em></p>"
    text = path.read_text()
    return text[text.find("<svg"):]


def report_html(out: Path, results: dict[str, Any], plots: list[str], topologies: dict[str, str]) -> str:
    plan = results["plan"]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in TABLE_HEAD)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table_rows(results))
    run_head = ("entry", "seed", "status", "S-mIoU", "T-mIoU", "search s", "peak MB", "params", "GFLOPs", "arch", "folder")
    run_rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
            _display(e), r["seed"], r.get("error") or r["status"], _f(r.get("s_miou")), _f(r.get("t_miou")), _f(r.get("search_seconds"), "{:.0f}"),
            _f(r.get("peak_mem_mb"), "{:.0f}"), r.get("params", ""), _f(r.get("flops") and r["flops"] / 1e9, "{:.3g}"), r.get("arch_hash", ""), r["folder"],
        )) + "</tr>"
        for e in results["entries"] for r in e["runs"]
    )
    pics = "".join(f'<div class="pic">{_inline_svg(out / p)}</div>' for p in plots if p.endswith(".svg"))
    topo = "".join(f'<figure><figcaption>{html.escape(n)}</figcaption>{_inline_svg(out / p)}</figure>' for n, p in topologies.items())
    notes = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in results["notes"].items())
    config = html.escape(json.dumps(plan["config"], indent=2))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>archgraph compare: {html.escape(out.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.2em; border-bottom: 1px solid #ddd; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: 2px 12px 2px 0; font-size: 0.9em; }}
.pics, .topos {{ display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }}
.pic svg {{ max-width: 640px; height: auto; }} figure {{ margin: 0; max-width: 440px; }}
figure svg {{ max-width: 440px; height: auto; }} pre {{ background: #f6f6f6; padding: 1em; overflow: auto; }}
</style></head><body>
<h1>Strategy comparison <code>{html.escape(str(out))}</code></h1>
<p>Strategies {html.escape(', '.join(plan['strategies']))}; seeds {html.escape(', '.join(map(str, plan['seeds'])))};
baselines {html.escape(', '.join(b['kind'] + (':' + b['name'] if b['name'] else f":{b['count']}") for b in plan['baselines']) or 'none')}.
Every architecture is trained with the same recipe (the config's <code>train</code> and <code>data</code> sections).</p>
<h2>Results (mean ± sample std over runs)</h2><table><tr>{head}</tr>{body}</table>
<ul>{notes}</ul>
<h2>Plots</h2><div class="pics">{pics}</div>
<h2>Topologies (first run of each entry)</h2><div class="topos">{topo}</div>
<h2>Runs</h2><table><tr>{''.join(f'<th>{h}</th>' for h in run_head)}</tr>{run_rows}</table>
<h2>Config</h2><pre>{config}</pre>
</body></html>
"""
