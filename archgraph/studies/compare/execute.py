"""Running a comparison: the plan's runs as jobs, a live table, and the measured cost.

:func:`run_compare` checks the plan, turns each :class:`~archgraph.studies.compare.plan.Run` into
jobs (:func:`compare_jobs`: a search with :func:`search_run`, then a stand-alone training with
:func:`train_architecture` that waits for it; a baseline only the training), runs them with the
chosen executor (:mod:`archgraph.studies.executors`: in this process by default, ``--jobs N``
worker processes, or Ray), shows :class:`LiveTable` while they go, and writes the results and the
report. A job that fails is recorded with its log and the others go on; SIGTERM stops it as Ctrl-C
does.

**Measured cost.** ``search_seconds`` is the wall time of :func:`run_search` summed over the
sessions of a run (setup, data, epochs, S-mIoU evaluations, end-of-search hooks such as SPOS's
evolution). Its peak memory is named for what it is (:mod:`archgraph.core.measure`): on CUDA
``peak_cuda_allocated_mb``, the peak GPU memory allocated during the search; on the CPU
``peak_rss_window_mb``, the peak resident set size of the process that searched (this one, or its
worker) *during the search*, measured by resetting the kernel's high-water mark before it
(``/proc/self/clear_refs``), so it includes the process's baseline (torch and the datasets, the same
for every entry) but no earlier run. Where that reset is not available the search log's process-wide
peak is used, and the field is ``peak_rss_mb``. search_cost.json keeps each session's seconds and peak
under the same names; old folders' ``peak_mem_mb`` is read as the quantity it was.
"""

from __future__ import annotations

import json
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import networkx as nx

from archgraph.config import Config
from archgraph.core.graph import graph_hash
from archgraph.core.graph import load as load_graph
from archgraph.core.measure import PEAK_CUDA_ALLOCATED_MB, PEAK_RSS_WINDOW_MB, MemoryWindow, PeakMemory, Timer, peak_memory_of, peak_quantity
from archgraph.io import atomic_write_json, read_json
from archgraph.studies.compare.baselines import baseline_arch
from archgraph.studies.compare.plan import Plan, Run, check_plan, plan_runs, run_config
from archgraph.studies.compare.preflight import check_budgets
from archgraph.studies.executors import ExecutorSpec, Job, run_jobs
from archgraph.studies.compare.report import write_outputs
from archgraph.studies.compare.results import collect_results, format_value

JOBS = "jobs"  # OUT/jobs/: each job's log and state (archgraph.studies.executors)


def search_peak(sessions: list[dict[str, Any]], log: list[dict[str, Any]], device: str) -> PeakMemory | None:
    """A search's peak memory: the highest of its sessions' windows (the last session's quantity), or,
    when none could be measured, the highest the search log recorded. A session or log line from before
    the names said their quantity (``peak_mem_mb``) is read as what it measured on ``device``."""
    session_legacy = PEAK_CUDA_ALLOCATED_MB if device.startswith("cuda") else PEAK_RSS_WINDOW_MB
    for records, legacy in ((sessions, session_legacy), (log, peak_quantity(device))):
        peaks = [p for p in (peak_memory_of(r, legacy) for r in records) if p is not None]
        if peaks:
            quantity = peaks[-1].quantity
            return PeakMemory(quantity, max(p.mb for p in peaks if p.quantity == quantity))
    return None


def search_run(cfg: Config, folder: Path, progress: bool = False) -> dict[str, Any]:
    """Search in ``folder/search`` unless finished; return final.json plus the measured cost.

    An unfinished search (a checkpoint, no final.json) resumes with its saved config."""
    import torch

    from archgraph.engine.checkpoint import has_checkpoint
    from archgraph.engine.search import CHECKPOINT, prepare_config, run_search

    out = folder / "search"
    cost_file = folder / "search_cost.json"
    cost = read_json(cost_file) if cost_file.is_file() else {"sessions": []}
    if not (out / "final.json").is_file():
        resume = has_checkpoint(out / CHECKPOINT)
        run_cfg = prepare_config(None, [], out, True) if resume else cfg
        device = torch.device(run_cfg.device)
        window, clock = MemoryWindow(device), Timer(device)
        finished = False
        try:
            with window, clock:
                run_search(run_cfg, out, resume=resume, progress=progress)
            finished = True
        finally:  # an interrupted session still counts towards the search's cost
            peak = window.fields() if window.windowed else {}  # a peak since the process started is not this session's
            cost["sessions"].append({"seconds": clock.seconds, **peak, "resumed": resume, "finished": finished})
            atomic_write_json(cost_file, cost)
    final = read_json(out / "final.json")
    sessions = cost["sessions"]
    peak = search_peak(sessions, _jsonl(out / "search.jsonl"), cfg.device)
    if sessions:
        seconds = sum(s["seconds"] for s in sessions)
    else:  # a search run made outside compare: the epochs' own times
        seconds = sum(r.get("seconds", 0.0) for r in _jsonl(out / "search.jsonl"))
    return {
        "s_miou": final.get("s_miou"),
        "arch_hash": final.get("arch_hash"),
        "spent": final.get("spent"),  # what the search spent, as it recorded it (steps, images, FLOPs, time)
        "budget": final.get("budget"),
        "arch_steps_note": final.get("arch_steps_note"),  # a strategy that takes no architecture steps by design (SPOS, rsws)
        "search_cost": final.get("cost"),  # search.cost_limit: the derived architecture's predicted and measured cost
        "search_warning": final.get("warning"),  # e.g. "cannot be told from the initialisation"
        "selection": {k: v for k, v in final["selection"].items() if k != "scores"} if isinstance(final.get("selection"), dict) else None,
        "search_seconds": seconds,
        **({peak.quantity: peak.mb} if peak is not None else {}),
        "epochs": len(_jsonl(out / "search.jsonl")),
    }


def train_architecture(cfg: Config, graph: nx.DiGraph, folder: Path, cache_dir: Path | None, progress: bool = False) -> dict[str, Any]:
    """Stand-alone metrics of ``graph`` with ``cfg``'s recipe and seed: ``folder/metrics.json`` if
    this run finished before, else from the run cache (which trains, or resumes, only when needed)."""
    from archgraph.studies.runcache import cache_key, default_cache_dir, entry_dir, trained_metrics

    done = folder / "metrics.json"
    if done.is_file():
        return read_json(done)
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
    """A rich renderable rebuilt on every refresh: status, the state of each of its jobs (queued,
    waiting for X, running, done, failed, cached), epochs done (read from the run's logs), S-mIoU,
    T-mIoU and time of every run."""

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

    @staticmethod
    def _jobs(run: Run) -> str:
        """Each job of the run and its state: ``search: done, train: running``."""
        from rich.markup import escape

        colours = {"done": "green", "cached": "green", "failed": "red", "running": "yellow"}
        parts = [f"{phase}: [{colours.get(state.split()[0], 'dim')}]{escape(state)}[/]" for phase, state in run.jobs.items()]
        return ", ".join(parts)

    def __rich__(self):
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"archgraph compare: {sum(r.status == 'done' for r in self.runs)}/{len(self.runs)} runs done")
        for col in ("run", "status", "jobs", "progress", "S-mIoU", "T-mIoU", "search s", "time"):
            table.add_column(col, justify="right" if col in ("S-mIoU", "T-mIoU", "search s", "time") else "left")
        colours = {"done": "green", "failed": "red", "search": "yellow", "train": "cyan", "pending": "dim"}
        for r in self.runs:
            elapsed = f"{time.perf_counter() - r.started:.0f}s" if r.started and r.status in ("search", "train") else ""
            res = r.result
            table.add_row(
                r.label,
                f"[{colours.get(r.status, 'white')}]{r.status}[/]",
                self._jobs(r),
                escape(r.error or self._epochs(r)),
                format_value(res.get("s_miou")),
                format_value(res.get("t_miou")),
                format_value(res.get("search_seconds"), "{:.0f}"),
                elapsed,
            )
        return table


SearchFn = Callable[[Config, Path, bool], dict[str, Any]]
TrainFn = Callable[[Config, nx.DiGraph, Path, "Path | None", bool], dict[str, Any]]


def run_compare(
    plan: Plan, out: Path, progress: bool = True, log: Callable[[str], None] = print, search_fn: SearchFn | None = None, train_fn: TrainFn | None = None, executor: ExecutorSpec | None = None
) -> dict[str, Any]:
    """Run (or resume) every run of ``plan`` in ``out``, write the results and the report; return
    results.json's dict. A run that fails is reported and the others go on.

    ``executor`` says where the jobs run (:mod:`archgraph.studies.executors`; default: this process,
    one after the other). ``search_fn`` / ``train_fn`` default to :func:`search_run` /
    :func:`train_architecture` (looked up when called, so tests and tools can substitute them; with
    worker processes or Ray they must be module-level functions the workers can import)."""
    search_fn = search_fn or search_run
    train_fn = train_fn or train_architecture
    spec = executor or ExecutorSpec()
    spec.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_plan(plan, out, write=False)  # a smaller plan or another config: refused before anything runs
    check_budgets(plan)  # a strategy whose budget cannot work: refused before the first run, with every other
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
            _execute(plan, out, runs, log if not progress else (lambda msg: None), search_fn, train_fn, spec)
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


# --------------------------------------------------------------------------------------------------
# the jobs (module-level functions: worker processes and Ray tasks import them by name)


def search_job(search_fn: SearchFn, cfg: Config, folder: Path) -> dict[str, Any]:
    """One run's search, under the run folder's lock (a stray worker of a killed compare cannot
    search the same folder at the same time)."""
    from archgraph.studies.runcache import folder_lock

    with folder_lock(folder):
        return search_fn(cfg, folder, False)


def strategy_train_job(train_fn: TrainFn, cfg: Config, folder: Path, cache_dir: Path | None, search: dict[str, Any]) -> dict[str, Any]:
    """The stand-alone training of a search's architecture (``search``: the search job's result)."""
    graph = load_graph(folder / "search" / "arch.yaml")
    return {**_train_summary(train_fn(cfg, graph, folder, cache_dir, False), graph), **_cost_summary(graph, cfg, folder)}


def baseline_train_job(train_fn: TrainFn, plan: Plan, out: Path, run: Run, cfg: Config, *deps: Any) -> dict[str, Any]:
    """A baseline's architecture (:func:`baseline_arch`, kept in its folder) trained stand-alone.

    ``deps``: the search a FLOPs band refers to (``--flops-reference STRATEGY``), when there is one."""
    graph = baseline_arch(plan, out, run, cfg)
    return {**_train_summary(train_fn(cfg, graph, run.folder, plan.cache_dir, False), graph), **_cost_summary(graph, cfg, run.folder)}


def _cost_summary(graph: nx.DiGraph, cfg: Config, folder: Path) -> dict[str, Any]:
    """results.json's ``cost`` of a run's architecture under ``search.cost_limit`` (nothing without
    one): measured once (``folder/cost.json``, reused on resume) on the architecture compiled alone."""
    if not cfg.search.cost_limit:
        return {}
    from archgraph.studies.compare.baselines import architecture_cost

    path = folder / "cost.json"
    if path.is_file():
        return {"cost": read_json(path)}
    cost = architecture_cost(graph, cfg)
    atomic_write_json(path, cost)
    return {"cost": cost}


def _job_key(phase: str, out: Path, run: Run) -> str:
    return phase + "-" + "-".join(run.folder.relative_to(out / "runs").parts)


def compare_jobs(plan: Plan, out: Path, runs: list[Run], search_fn: SearchFn, train_fn: TrainFn) -> list[tuple[Run, str, Job]]:
    """Every job of the comparison, in dependency order, with its run and phase (search, train)."""
    jobs: list[tuple[Run, str, Job]] = []
    searches: dict[str, str] = {}  # strategy of the first seed -> its search job (a FLOPs reference)
    for run in runs:
        cfg = train_config(plan, run)
        train = _job_key("train", out, run)
        if run.kind == "strategy":
            search_cfg = run_config(plan.base, run.seed, run.entry, plan.strategy_options, plan.variants.get(run.entry))
            search = _job_key("search", out, run)
            searches.setdefault(run.entry, search)
            jobs.append((run, "search", Job(search, f"{run.label} search", search_job, (search_fn, search_cfg, run.folder), cached=partial(_is_file, run.folder / "search" / "final.json"))))
            jobs.append((run, "train", Job(train, f"{run.label} train", strategy_train_job, (train_fn, cfg, run.folder, plan.cache_dir), deps=(search,), cached=partial(_trained, plan, run, cfg))))
        else:
            ref = plan.flops_reference if run.kind == "random" and plan.flops_band else None
            deps = (searches[ref],) if ref in searches else ()
            jobs.append((run, "train", Job(train, f"{run.label} train", baseline_train_job, (train_fn, plan, out, run, cfg), deps=deps, cached=partial(_trained, plan, run, cfg))))
    return jobs


def train_config(plan: Plan, run: Run) -> Config:
    """The config a run's stand-alone training uses: a strategy entry's without its search-only settings
    (a low-resolution proxy searches at another scale, its architecture is trained at the base one)."""
    if run.kind != "strategy":
        return run_config(plan.base, run.seed)
    return run_config(plan.base, run.seed, run.entry, plan.strategy_options, plan.variants.get(run.entry), search=False)


def _is_file(path: Path) -> bool:
    return path.is_file()


def _arch_file(run: Run) -> Path:
    return run.folder / "search" / "arch.yaml" if run.kind == "strategy" else run.folder / "arch.yaml"


def _trained(plan: Plan, run: Run, cfg: Config) -> bool:
    """The run's stand-alone result exists: its metrics.json, or its (known) architecture's cache entry."""
    from archgraph.studies.runcache import cached_metrics, default_cache_dir

    if (run.folder / "metrics.json").is_file():
        return True
    if not _arch_file(run).is_file():
        return False
    cache = plan.cache_dir if plan.cache_dir is not None else default_cache_dir()
    return cached_metrics(load_graph(_arch_file(run)), cfg, cfg.seed, cache) is not None


def _execute(plan: Plan, out: Path, runs: list[Run], log, search_fn: SearchFn, train_fn: TrainFn, spec: ExecutorSpec) -> None:
    jobs = compare_jobs(plan, out, runs, search_fn, train_fn)
    where = {id(job): (run, phase) for run, phase, job in jobs}
    labels = {job.key: job.label for _, _, job in jobs}
    cache = plan.cache_dir

    def notify(job: Job) -> None:
        run, phase = where[id(job)]
        _show(run, phase, job, labels, cache, plan, log)

    for run, phase, job in jobs:  # the table shows every job from the start
        run.jobs[phase] = "waiting for " + ", ".join(labels[d] for d in job.deps) if job.deps else "queued"
    run_jobs([job for _, _, job in jobs], spec, out / JOBS, notify)
    for run in runs:  # the results in the embedded order: the search's fields, then the training's
        mine = {phase: job for r, phase, job in jobs if r is run}
        run.result = {}
        for phase in ("search", "train"):
            if phase in mine and mine[phase].state in ("done", "cached"):
                run.result.update(mine[phase].result)
        failed = next((phase for phase, j in mine.items() if j.state == "failed"), None)
        run.status, run.error = ("failed", f"{failed}: {mine[failed].error}") if failed else ("done", None)


def _show(run: Run, phase: str, job: Job, labels: dict[str, str], cache: Path | None, plan: Plan, log) -> None:
    """One job's new state into its run (the live table) and, without the table, a log line."""
    from archgraph.studies.runcache import cache_key, default_cache_dir, entry_dir

    state = job.state
    if state == "waiting":
        state = "waiting for " + ", ".join(labels[d] for d in job.deps)
    elif state == "running" and job.host:
        state = f"running ({job.host})"
    run.jobs[phase] = state
    if job.state == "running":
        run.status, run.started = phase, run.started or time.perf_counter()
        if phase == "train" and _arch_file(run).is_file():
            graph = load_graph(_arch_file(run))
            cfg = train_config(plan, run)
            run.train_log = entry_dir(cache if cache is not None else default_cache_dir(), cache_key(graph, cfg, cfg.seed)) / "train.jsonl"
        where = f" ({job.host})" if job.host else ""
        log(f"[{run.label}] {phase}{where} -> {run.folder / 'search' if phase == 'search' else run.folder}")
    elif job.state in ("done", "cached"):
        run.result.update(job.result)
        if phase == "train":
            run.status = "done"
        log(f"[{run.label}] {phase} {'cached (finished before)' if job.state == 'cached' else 'done'}" + (f": T-mIoU {job.result['t_miou']:.4f}" if phase == "train" else ""))
    elif job.state == "failed":
        if run.status != "failed":  # the first failure is the cause
            run.status, run.error = "failed", f"{phase}: {job.error}"
        log(f"[{run.label}] {phase} failed: {job.error}")


def _train_summary(metrics: dict[str, Any], graph: nx.DiGraph) -> dict[str, Any]:
    from archgraph.studies.compare.stats import single_class

    return {
        "single_class": single_class(metrics.get("per_class_iou")),  # predicts one class: the majority-class mIoU
        "t_miou": metrics["miou"],
        "pixel_acc": metrics.get("pixel_acc"),
        "params": metrics.get("params"),
        "flops": metrics.get("flops"),
        "flops_input": metrics.get("flops_input"),
        "arch_hash": graph_hash(graph),
        "cache_entry": metrics.get("cache_entry"),
    }
