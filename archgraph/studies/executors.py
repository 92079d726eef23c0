"""Running a study's jobs: in this process, on N worker processes, as Ray tasks, or with a plug-in's executor.

``archgraph compare`` and ``archgraph correlate`` describe their work as :class:`Job` objects (a
search, a stand-alone training, a supernet scoring), each naming the jobs whose results it takes
(``deps``: a training waits for its search). :func:`run_jobs` runs them with the executor that
``--executor`` names. Executors are a registry like every other kind
(:class:`archgraph.core.registry.Registry`, entry-point group ``archgraph.executors``): an entry point
names an :class:`Executor` subclass and is its registration, the built-ins' included, so a plug-in's
executor is chosen exactly as a built-in is (docs/plugins.md, "Executors"). The built-ins:

- ``embedded`` (the default): in this process, one after the other, in the list's order;
- ``processes`` (``--jobs N``): N worker processes of this machine
  (:class:`concurrent.futures.ProcessPoolExecutor`, ``spawn`` start method, so no worker inherits a
  CUDA context or the parent's threads). Each worker gets one GPU where there are GPUs
  (``CUDA_VISIBLE_DEVICES`` set in the worker's initializer, before torch touches CUDA), and
  ``cpu_count // N`` torch threads otherwise;
- ``ray`` (``--executor ray``): one Ray task per job on a local Ray (``ray.init()``) or a cluster
  (``--ray-address`` or ``RAY_ADDRESS``), ``num_gpus=1`` per task where the cluster has GPUs, Ray's
  ``max_retries`` / ``retry_exceptions`` for lost workers and I/O errors, and dependencies handed
  over as object refs (Ray starts a task when its inputs exist).

Nothing here orders work beyond the dependencies: the pool and Ray decide what runs where.

**The record.** The jobs write run folders and the run cache exactly as the embedded run does; those
stay the only record of results, so a killed study resumes in any mode. A job whose result already
exists is not scheduled: its function runs here, reading the files, and the job is ``cached``. The
folder ``OUT/jobs/`` holds, per job, ``<key>.log`` (in a worker: all it printed; in every mode: the
traceback when it fails) and ``<key>.json`` (its state, pid and host while it runs: what the live
table shows); neither is read back as a result.

**Failures.** A job that raises is ``failed`` with its error and the path of its log; the jobs that
need it fail with "needs X, which failed"; all others go on. A worker that dies (killed, out of
memory) breaks the process pool, which ends the other workers too: a fresh pool takes the jobs, those
that were running up to ``--retries`` more times (they resume from their checkpoints); Ray retries a
task whose worker died, or that raised ``OSError``, ``--retries`` times itself. Running the study
again retries what failed.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from archgraph.core.registry import Registry
from archgraph.errors import ConfigError
from archgraph.io import atomic_write_json

STATES = ("queued", "waiting", "running", "done", "failed", "cached")
RAY_INSTALL = 'pip install "archgraph[ray]"'


@dataclass
class Job:
    """One unit of a study. ``fn(*args, *results of deps)`` runs it; ``fn`` must be a module-level
    function (workers import it by name) and ``args`` picklable."""

    key: str  # unique and usable as a file name: "search-dcnas-s0"
    label: str  # for people: "dcnas s0 search"
    fn: Callable[..., Any]
    args: tuple = ()
    deps: tuple[str, ...] = ()  # keys of the jobs whose results are appended to args, in this order
    cached: Callable[[], bool] | None = None  # True when the result exists already (run fn here, mark cached)
    state: str = "queued"  # one of STATES
    result: Any = None
    error: str | None = None
    log: Path | None = None
    started: float | None = None  # time.perf_counter() when it started running (the live table's clock)
    submitted: float = 0.0  # time.time() when sent to a worker: a worker's post from before is stale
    host: str = ""  # "pid 123 on node-1" while running in a worker
    attempts: int = 0  # starts lost with a dead worker (processes; Ray counts its own)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cached")


@dataclass
class ExecutorSpec:
    """How to run the jobs: ``--executor``, ``--jobs``, ``--ray-address``, ``--retries``."""

    kind: str = "embedded"  # a registered executor's name (EXECUTOR_REGISTRY)
    jobs: int = 1  # worker processes (processes); ignored elsewhere
    ray_address: str | None = None  # None: RAY_ADDRESS, else a local Ray
    retries: int = 2  # Ray: retries of a task whose worker died or that hit an I/O error

    def check(self) -> None:
        """The flags every executor shares; an unknown ``kind`` names the registered executors and the closest one."""
        EXECUTOR_REGISTRY.get(self.kind)
        if self.jobs < 1:
            raise ConfigError(f"--jobs {self.jobs}: give at least 1 worker process")
        if self.retries < 0:
            raise ConfigError(f"--retries {self.retries}: give 0 or more")

    def build(self) -> "Executor":
        """The registered executor ``kind``, set up with this spec (nothing runs yet)."""
        return EXECUTOR_REGISTRY.get(self.kind)(self)


def executor_spec(executor: str | None, jobs: int | None, ray_address: str | None = None, retries: int = 2) -> ExecutorSpec:
    """The spec the command-line flags ask for: ``--jobs N`` alone means worker processes.

    Checked before any work: an unknown executor, a flag the executor refuses, a package it needs
    that is missing (Ray) are one-line errors here, not after the first search."""
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs {jobs}: give at least 1 worker process")
    kind = executor or ("processes" if jobs and jobs > 1 else "embedded")
    if ray_address and kind != "ray":
        raise ConfigError("--ray-address needs --executor ray")
    workers = jobs or ((os.cpu_count() or 1) if kind == "processes" else 1)  # --executor processes alone: one per core
    spec = ExecutorSpec(kind, workers, ray_address, retries)
    spec.check()
    spec.build().check()
    return spec


def import_ray():
    """The ``ray`` module, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed; install it with: {RAY_INSTALL}") from None
    return ray


# --------------------------------------------------------------------------------------------------
# what runs in a worker (and here, in the embedded mode)


def run_one(fn: Callable[..., Any], args: tuple, board: Path, key: str, redirect: bool, threads: int | None, *deps: Any) -> Any:
    """Run one job where it was sent: state to ``board/<key>.json``, output to ``board/<key>.log``.

    In a worker (``redirect``) the job's stdout and stderr (file descriptors 1 and 2, so C++ and
    subprocess output too) go to its log; in the embedded mode they stay on the console and only a
    failure's traceback goes to the log."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    log = board / f"{key}.log"
    _post(board, key, "running")
    with _Redirected(log, redirect):
        try:
            result = fn(*args, *deps)
        except BaseException as exc:
            with open(log, "a") as f:
                f.write(f"\n--- job {key} failed ---\n{traceback.format_exc()}")
            _post(board, key, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", error=_message(exc))
            raise
    _post(board, key, "done")
    return result


def _post(board: Path, key: str, state: str, **extra: Any) -> None:
    atomic_write_json(board / f"{key}.json", {"state": state, "pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), **extra})


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Redirected:
    """File descriptors 1 and 2 appended to ``path`` for the duration (when ``active``)."""

    def __init__(self, path: Path, active: bool):
        self.path, self.active = path, active
        self.saved: list[int] = []

    def __enter__(self) -> "_Redirected":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.active:
            sys.stdout.flush()
            sys.stderr.flush()
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self.saved = [os.dup(1), os.dup(2)]
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.saved:
            sys.stdout.flush()
            sys.stderr.flush()
            for target, saved in zip((1, 2), self.saved):
                os.dup2(saved, target)
                os.close(saved)
            self.saved = []


def _worker_init(gpus: Any, threads: int) -> None:
    """A pool worker's start: its GPU (one id from the shared queue) before torch initialises CUDA."""
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus.get())
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["ARCHGRAPH_WORKER"] = "1"


# --------------------------------------------------------------------------------------------------
# the parent's side


Notify = Callable[[Job], None]


class Executor:
    """How a study's jobs run: the base of every executor, built-in or a plug-in's.

    Registered by an entry point in group ``archgraph.executors`` that names the subclass (or, in one
    process, :func:`register_executor`); ``--executor NAME`` then builds it with the
    :class:`ExecutorSpec` of the command line. :meth:`check` runs before any work, :meth:`run` once
    with the jobs that are not cached. The study's record (run folders, the run cache) is written by
    the jobs themselves, so an executor only decides where and when each job runs.
    """

    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec  # --jobs, --ray-address, --retries: use what applies, ignore the rest

    def check(self) -> None:
        """Refuse what this executor cannot do, before any work: raise
        :class:`~archgraph.errors.ConfigError` naming the problem and the fix (a missing package, a flag)."""

    def run(self, schedule: "Schedule") -> None:
        """Run every job of ``schedule.pending`` and return when each is finished (done or failed).

        Report every change through ``schedule`` (:meth:`Schedule.start`, :meth:`~Schedule.done`,
        :meth:`~Schedule.fail`); a job whose dependency failed fails too (:meth:`Schedule.fail_dependents`).
        KeyboardInterrupt must stop the jobs and propagate (a re-run resumes them)."""
        raise NotImplementedError(f"{type(self).__qualname__} must define run(schedule)")


@dataclass
class Schedule:
    """The jobs an executor runs, and the calls through which it reports what happens to them.

    ``pending`` is a dependency order (every dependency before its dependents); a dependency missing
    from it is finished already (cached). The state methods set the job's fields and tell the live
    table; :meth:`call` and :meth:`task` run a job the way every built-in does, so its state file and
    log land in ``board`` (``OUT/jobs/``)."""

    pending: list[Job]
    by_key: dict[str, Job]  # every job of the study, the cached ones included
    board: Path
    say: Notify

    def inputs(self, job: Job) -> tuple:
        """The results of ``job``'s dependencies, in ``job.deps`` order (its function's last arguments)."""
        return _dep_results(job, self.by_key)

    def ready(self, job: Job) -> bool:
        """``job`` may start: it is not finished and every dependency is done or cached."""
        return not job.finished and all(self.by_key[d].state in ("done", "cached") for d in job.deps)

    def blocked_by(self, job: Job) -> Job | None:
        """The first dependency of ``job`` that failed, if any."""
        return _blocked_by(job, self.by_key)

    def start(self, job: Job, host: str = "") -> None:
        """``job`` is running (``host``: where, for the live table; empty in this process)."""
        job.state, job.started, job.host = "running", time.perf_counter(), host
        self.say(job)

    def call(self, job: Job, redirect: bool = False, threads: int | None = None) -> Any:
        """Run ``job`` here and return its result (exceptions propagate). ``redirect``: its output to
        its log instead of this console; ``threads``: torch threads for it."""
        return run_one(job.fn, job.args, self.board, job.key, redirect, threads, *self.inputs(job))

    def task(self, job: Job, redirect: bool = True, threads: int | None = None) -> tuple[Callable[..., Any], tuple]:
        """``(function, arguments)`` that run ``job`` in another process: ``function(*arguments)``
        returns its result; both pickle when the job's function is module-level and its arguments pickle."""
        return run_one, (job.fn, job.args, self.board, job.key, redirect, threads, *self.inputs(job))

    def done(self, job: Job, result: Any) -> None:
        """``job`` finished with ``result``."""
        _finish(job, "done", self.say, result)

    def fail(self, job: Job, error: BaseException | str) -> None:
        """``job`` failed with ``error`` (the path of its log is appended)."""
        _fail(job, error, self.say)

    def fail_dependents(self) -> None:
        """Every pending job whose dependency failed fails too, naming it (transitively)."""
        _fail_dependents(self.pending, self.by_key, self.say)

    def refresh(self, jobs: list[Job] | None = None) -> None:
        """Queued jobs that a worker has started (their state file in ``board`` says so) become running."""
        refresh_running(self.pending if jobs is None else jobs, self.board, self.say)


def run_jobs(jobs: list[Job], spec: ExecutorSpec, board: Path, notify: Notify | None = None) -> None:
    """Run ``jobs`` (a dependency order: every dep before its dependents) with ``spec``'s executor.

    Sets each job's ``state``, ``result`` and ``error`` in place; ``notify(job)`` is told of every
    change (the live table). Returns when every job is finished; KeyboardInterrupt stops it (the
    workers are stopped too; a re-run resumes)."""
    board.mkdir(parents=True, exist_ok=True)
    by_key = {j.key: j for j in jobs}
    for j in jobs:
        missing = [d for d in j.deps if d not in by_key]
        if missing:
            raise ValueError(f"job {j.key} needs unknown jobs {missing}")
        j.log = board / f"{j.key}.log"
    say = notify or (lambda job: None)
    _run_cached(jobs, by_key, board, say)
    pending = [j for j in jobs if not j.finished]
    if not pending:
        return
    executor = spec.build()
    executor.check()
    executor.run(Schedule(pending, by_key, board, say))
    for j in pending:  # an executor that returned early (a plug-in's bug): its jobs fail, with why, and a re-run retries them
        if not j.finished:
            _fail(j, f"executor {spec.kind!r} returned without finishing this job (its run() must leave every job done or failed)", say)


def _dep_results(job: Job, by_key: dict[str, Job]) -> tuple:
    return tuple(by_key[d].result for d in job.deps)


def _blocked_by(job: Job, by_key: dict[str, Job]) -> Job | None:
    """The first dependency of ``job`` that failed, if any."""
    return next((by_key[d] for d in job.deps if by_key[d].state == "failed"), None)


def _finish(job: Job, state: str, say: Notify, result: Any = None, error: str | None = None) -> None:
    job.state, job.result, job.error = state, result, error
    say(job)


def _fail(job: Job, exc: BaseException | str, say: Notify) -> None:
    text = exc if isinstance(exc, str) else _message(exc)
    _finish(job, "failed", say, error=f"{text} (log: {job.log})")


def _fail_dependents(jobs: list[Job], by_key: dict[str, Job], say: Notify) -> None:
    """Every unfinished job whose dependency failed fails too, naming it (transitively)."""
    changed = True
    while changed:
        changed = False
        for j in jobs:
            dep = None if j.finished else _blocked_by(j, by_key)
            if dep is not None:
                _finish(j, "failed", say, error=f"needs {dep.label}, which failed")
                changed = True


def _run_cached(jobs: list[Job], by_key: dict[str, Job], board: Path, say: Notify) -> None:
    """Jobs whose results exist (and whose deps are cached too) run here: they only read files."""
    for j in jobs:
        if j.cached is None or not all(by_key[d].state == "cached" for d in j.deps) or not j.cached():
            continue
        j.started = time.perf_counter()
        try:
            result = run_one(j.fn, j.args, board, j.key, False, None, *_dep_results(j, by_key))
        except Exception:  # a damaged file: let the job run properly below
            continue
        _finish(j, "cached", say, result)


def refresh_running(jobs: list[Job], board: Path, say: Notify) -> None:
    """Queued jobs that a worker has started (their ``<key>.json`` says so) become ``running``."""
    for j in jobs:
        if j.state not in ("queued", "waiting"):
            continue
        try:
            posted = json.loads((board / f"{j.key}.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if posted.get("state") == "running" and posted.get("time", 0) >= j.submitted:
            j.state, j.host = "running", f"pid {posted.get('pid')} on {posted.get('host')}"
            j.started = time.perf_counter()
            say(j)


def _gpu_ids() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else all that torch sees."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no usable CUDA runtime: CPU workers
        return []


def worker_threads(jobs: int) -> int:
    """torch threads for each of ``jobs`` worker processes: ``OMP_NUM_THREADS`` when the user set it
    (the convention on a shared machine, and the one a study started in-process runs with too, so
    both give the same numbers), else the CPUs this process may use, shared out. The usable CPUs,
    not ``os.cpu_count()``: in a container on a large host the latter counts the host's cores."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, jobs))


def _new_pool(spec: ExecutorSpec):
    """A spawn-context pool; each worker takes one GPU id from a queue (round robin over the GPUs)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("spawn")
    gpus = _gpu_ids()
    queue = None
    if gpus:
        queue = ctx.Queue()
        for i in range(spec.jobs):
            queue.put(gpus[i % len(gpus)])
    threads = worker_threads(spec.jobs)
    pool = ProcessPoolExecutor(max_workers=spec.jobs, mp_context=ctx, initializer=_worker_init, initargs=(queue, threads))
    return pool, (None if gpus else threads)


def _run_processes(pending: list[Job], by_key: dict[str, Job], board: Path, spec: ExecutorSpec, say: Notify) -> None:
    """Submit every job whose deps are done; as each finishes, submit the jobs it unblocks."""
    from concurrent.futures import FIRST_COMPLETED, wait

    pool, threads = _new_pool(spec)
    futures: dict[Any, Job] = {}
    try:
        while True:
            _fail_dependents(pending, by_key, say)
            _submit_ready(pool, threads, pending, futures, by_key, board, say)
            if not futures:
                return
            done, _ = wait(list(futures), timeout=1.0, return_when=FIRST_COMPLETED)
            refresh_running(list(futures.values()), board, say)
            if _collect(done, futures, say):  # a worker died: the pool is broken
                _requeue(futures, spec.retries, say)
                pool.shutdown(wait=False, cancel_futures=True)
                pool, threads = _new_pool(spec)
    except BaseException:
        _stop_pool(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _submit_ready(pool: Any, threads: int | None, pending: list[Job], futures: dict[Any, Job], by_key: dict[str, Job], board: Path, say: Notify) -> None:
    in_flight = set(map(id, futures.values()))
    for j in pending:
        if j.state not in ("queued", "waiting") or id(j) in in_flight:
            continue
        blocker = next((by_key[d] for d in j.deps if not by_key[d].finished), None)
        if blocker is None:
            j.submitted, j.state = time.time(), "queued"
            futures[pool.submit(run_one, j.fn, j.args, board, j.key, True, threads, *_dep_results(j, by_key))] = j
            say(j)
        elif j.state != "waiting":
            j.state = "waiting"
            say(j)


def _collect(done: set, futures: dict[Any, Job], say: Notify) -> bool:
    """Finished futures into their jobs; ``True`` when the pool broke (a worker died)."""
    from concurrent.futures.process import BrokenProcessPool

    broken = False
    for fut in done:
        j = futures.pop(fut)
        try:
            _finish(j, "done", say, fut.result())
        except BrokenProcessPool:
            broken = True
            futures[fut] = j  # decided by _requeue, with the others of the pool
        except Exception as exc:
            _fail(j, exc, say)
    return broken


def _requeue(futures: dict[Any, Job], retries: int, say: Notify) -> None:
    """After a worker died (and the pool with it, which ends every worker): the jobs that had not
    started go again; those that had go again up to ``retries`` times (one of them may be what
    kills its worker, e.g. out of memory), resuming from their checkpoints, then fail."""
    for j in futures.values():
        if j.state == "running":
            j.attempts += 1
            if j.attempts > retries:
                _fail(j, f"its worker process died {j.attempts} times (killed, or out of memory); a re-run resumes it", say)
                continue
        j.state = "queued"
        say(j)
    futures.clear()


def _stop_pool(pool: Any) -> None:
    """Ctrl-C or SIGTERM here: SIGTERM to the workers, whose runs save a checkpoint and stop."""
    import signal

    for proc in list(getattr(pool, "_processes", {}).values()):
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, OSError):
            pass
    pool.shutdown(wait=True, cancel_futures=True)


def _run_ray(pending: list[Job], by_key: dict[str, Job], board: Path, spec: ExecutorSpec, say: Notify) -> None:
    """Every job as a Ray task, dependencies as object refs; collect as they finish."""
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=spec.ray_address or os.environ.get("RAY_ADDRESS") or None, log_to_driver=False)
    futures: dict[Any, Job] = {}
    try:
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        task = ray.remote(run_one).options(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=spec.retries, retry_exceptions=[OSError])
        refs: dict[str, Any] = {}
        for j in pending:
            deps = [refs[d] if d in refs else by_key[d].result for d in j.deps]
            j.submitted = time.time()
            ref = task.remote(j.fn, j.args, board, j.key, True, None, *deps)
            refs[j.key], futures[ref] = ref, j
            j.state = "waiting" if any(d in refs for d in j.deps) else "queued"
            say(j)
        _collect_ray(ray, futures, pending, by_key, board, say)
    except BaseException:
        for ref in futures:
            ray.cancel(ref)
        raise
    finally:
        if started_here:
            ray.shutdown()


def _collect_ray(ray: Any, futures: dict[Any, Job], pending: list[Job], by_key: dict[str, Job], board: Path, say: Notify) -> None:
    while futures:
        ready, _ = ray.wait(list(futures), num_returns=1, timeout=1.0)
        for j in futures.values():
            if j.state == "waiting" and all(by_key[d].finished for d in j.deps):
                j.state = "queued"
                say(j)
        refresh_running(list(futures.values()), board, say)
        for ref in ready:
            j = futures.pop(ref)
            if j.finished:  # failed already, with a dependency
                continue
            try:
                _finish(j, "done", say, ray.get(ref))
            except Exception as exc:
                cause = getattr(exc, "cause", None)
                _fail(j, cause if isinstance(cause, BaseException) else exc, say)
            _fail_dependents(pending, by_key, say)


# --------------------------------------------------------------------------------------------------
# the built-in executors, and the registry they are found in as a plug-in's are


class EmbeddedExecutor(Executor):
    """In this process, one after the other, in the list's order (the default)."""

    def run(self, schedule: Schedule) -> None:
        for j in schedule.pending:
            if j.finished:  # failed already, with a dependency
                continue
            schedule.start(j)
            try:
                result = schedule.call(j)
            except Exception as exc:  # the job boundary: report it and what needs it, go on with the others
                schedule.fail(j, exc)
                schedule.fail_dependents()
                continue
            schedule.done(j, result)


class ProcessExecutor(Executor):
    """``--jobs N`` worker processes of this machine (spawned), one GPU each where there are GPUs."""

    def run(self, schedule: Schedule) -> None:
        _run_processes(schedule.pending, schedule.by_key, schedule.board, self.spec, schedule.say)


class RayExecutor(Executor):
    """One Ray task per job, on a local Ray or ``--ray-address``; needs ``pip install "archgraph[ray]"``."""

    def check(self) -> None:
        if self.spec.jobs != 1:
            raise ConfigError("--jobs sets worker processes; with --executor ray the cluster's resources decide (drop --jobs)")
        import_ray()

    def run(self, schedule: Schedule) -> None:
        _run_ray(schedule.pending, schedule.by_key, schedule.board, self.spec, schedule.say)


def _adopt(name: str, obj: Any) -> type[Executor]:
    """An entry point naming an :class:`Executor` subclass registers it under the entry point's name."""
    if isinstance(obj, type) and issubclass(obj, Executor):
        return obj
    raise ConfigError(f"executor entry point {name!r} loads {obj!r}, not an archgraph.studies.executors.Executor subclass; point it at the class (name = \"pkg.module:MyExecutor\")")


EXECUTOR_REGISTRY: Registry[type[Executor]] = Registry(
    "executor", "archgraph.executors", adopt=_adopt, hint="--executor takes one of them; a plug-in declares name = \"pkg.module:Class\" in group archgraph.executors"
)


def register_executor(name: str) -> Callable[[type[Executor]], type[Executor]]:
    """Register an :class:`Executor` subclass as ``--executor <name>`` in this process (a plug-in
    declares an entry point instead, so that every process finds it)."""

    def deco(cls: type[Executor]) -> type[Executor]:
        EXECUTOR_REGISTRY.add(name, _adopt(name, cls))
        return cls

    return deco


def executor_names() -> list[str]:
    """Every executor name: the built-ins and the installed plug-ins' (loads them)."""
    return EXECUTOR_REGISTRY.names()


class JobTable:
    """A rich renderable of every job seen (through :meth:`update`, a ``notify`` callback): its state
    (queued, waiting for X, running, done, failed, cached), where it runs, its time and its error."""

    COLOURS = {"done": "green", "cached": "green", "failed": "red", "running": "yellow", "waiting": "dim", "queued": "dim"}

    def __init__(self, title: str):
        self.title = title
        self.jobs: dict[str, Job] = {}
        self.labels: dict[str, str] = {}

    def update(self, job: Job) -> None:
        self.jobs[job.key] = job
        self.labels[job.key] = job.label

    def state(self, job: Job) -> str:
        if job.state == "waiting":
            return "waiting for " + ", ".join(self.labels.get(d, d) for d in job.deps)
        return job.state

    def __rich__(self):
        from rich.markup import escape
        from rich.table import Table

        done = sum(j.state in ("done", "cached") for j in self.jobs.values())
        table = Table(title=f"{self.title}: {done}/{len(self.jobs)} jobs done")
        for col in ("job", "state", "where", "time", "error (log)"):
            table.add_column(col, justify="right" if col == "time" else "left")
        for j in self.jobs.values():
            elapsed = f"{time.perf_counter() - j.started:.0f}s" if j.started and j.state == "running" else ""
            table.add_row(escape(j.label), f"[{self.COLOURS.get(j.state, 'white')}]{escape(self.state(j))}[/]", j.host if j.state == "running" else "", elapsed, escape(j.error or ""))
        return table


EXECUTOR_REGISTRY.load_builtins()  # the built-ins' entry points (their classes are defined above)
