"""Running a comparison: every run of the plan in turn, a live table, and the measured cost.

:func:`run_compare` checks the plan, runs each :class:`~archgraph.studies.compare.plan.Run` (a
search with :func:`search_run`, then a stand-alone training with :func:`train_architecture`; a
baseline only the training), shows :class:`LiveTable` while it goes, and writes the results and the
report. A run that fails is recorded and the others go on; SIGTERM stops it as Ctrl-C does.

**Measured cost.** ``search_seconds`` is the wall time of :func:`run_search` summed over the
sessions of a run (setup, data, epochs, S-mIoU evaluations, end-of-search hooks such as SPOS's
evolution). ``peak_mem_mb`` is the peak GPU memory allocated on CUDA; on the CPU it is the peak
resident set size of this process *during the search*, measured by resetting the kernel's
high-water mark before it (``/proc/self/clear_refs``), so it includes the process's baseline (torch
and the datasets, the same for every entry) but no earlier run. Where that reset is not available
the search log's ``peak_mem_mb`` (process-wide peak) is used and ``peak_mem_source`` says so.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

import networkx as nx

from archgraph.config import Config
from archgraph.core.graph import graph_hash
from archgraph.core.graph import load as load_graph
from archgraph.errors import ArchgraphError
from archgraph.io import atomic_write_json
from archgraph.studies.compare.baselines import baseline_arch
from archgraph.studies.compare.plan import Plan, Run, check_plan, plan_runs, run_config
from archgraph.studies.compare.report import write_outputs
from archgraph.studies.compare.results import collect_results, format_value


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
                format_value(res.get("s_miou")), format_value(res.get("t_miou")), format_value(res.get("search_seconds"), "{:.0f}"), elapsed,
            )
        return table


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
                graph = baseline_arch(plan, out, run, cfg)
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
