"""Studies on many workers: `--jobs 2` and `--executor ray` give the in-process results; the run
cache's lock lets two processes racing for one entry train it once; a killed worker's job is run
again; a failed job is reported with its log and retried by a re-run; a clear error without Ray."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from archgraph.cli import main
from archgraph.config import load_config
from archgraph.errors import ArchgraphError
from archgraph.studies.compare import Plan, parse_baselines, run_compare, train_architecture
from archgraph.studies.executors import ExecutorSpec
from archgraph.core.measure import PEAK_MEMORY_KEYS
from helpers import TINY_COMPARE

TINY = TINY_COMPARE
TIMINGS_AND_PATHS = ("search_seconds", *PEAK_MEMORY_KEYS, "cache_entry")


def compare(out: Path, *extra: str) -> int:
    return main(["compare", "--strategies", "dcnas", "--seeds", "1", "--baselines", "preset:fcn", "--cache", str(out.parent / "cache"), "--out", str(out), "--no-progress", *extra, "--set", *TINY])


def plan(root: Path) -> Plan:
    return Plan(load_config(None, TINY), ["dcnas"], [0], parse_baselines("preset:fcn"), cache_dir=root / "cache")


def untimed(value):
    """``value`` without timing-only fields at any depth (``spent.wall_seconds``, a selection's ``seconds``):
    wall time differs between two runs of the same job; every other field must not."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if not k.endswith("seconds")}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def entries(out: Path) -> list[dict]:
    """results.json's runs without what may differ between modes (timings, paths)."""
    res = json.loads((out / "results.json").read_text())
    return [untimed({k: v for k, v in r.items() if k not in TIMINGS_AND_PATHS}) | {"entry": e["name"]} for e in res["entries"] for r in e["runs"]]


def fails_for_presets(cfg, graph, folder, cache_dir, progress):
    if "preset" in str(folder):
        raise ArchgraphError("the preset's data went missing")
    return train_architecture(cfg, graph, folder, cache_dir, progress)


@pytest.fixture(scope="module")
def inprocess(tmp_path_factory):
    """The in-process results (the reference), made by a compare whose preset training failed once
    and that was then run again; also what the failed run reported."""
    root = tmp_path_factory.mktemp("embedded")
    first = run_compare(plan(root), root / "cmp", progress=False, log=lambda m: None, train_fn=fails_for_presets)
    assert compare(root / "cmp") == 0  # the same command again retries the failed job
    return entries(root / "cmp"), {e["name"]: e["runs"][0] for e in first["entries"]}


def test_a_failed_job_is_reported_with_its_log_and_retried_by_a_rerun(inprocess):
    reference, first = inprocess
    assert first["dcnas"]["status"] == "done"  # the others went on
    failed = first["preset:fcn"]
    assert failed["status"] == "failed" and "the preset's data went missing" in failed["error"]
    log = Path(failed["error"].split("(log: ")[1].rstrip(")"))
    assert "Traceback" in log.read_text() and "fails_for_presets" in log.read_text()
    assert [r["status"] for r in reference] == ["done", "done"]  # retried by the second run


# -------------------------------------------------------------------------------------------- --jobs 2


def killed_once(cfg, graph, folder, cache_dir, progress):
    """The preset's training: its worker is killed (SIGKILL, as the out-of-memory killer does) the first time."""
    marker = Path(folder) / "killed-once"
    if "preset" in str(folder) and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return train_architecture(cfg, graph, folder, cache_dir, progress)


def test_jobs_2_gives_the_inprocess_results_and_survives_a_killed_worker(inprocess, tmp_path):
    reference, _ = inprocess
    out = tmp_path / "cmp"
    run_compare(plan(tmp_path), out, progress=False, log=lambda m: None, train_fn=killed_once, executor=ExecutorSpec("processes", jobs=2))
    assert entries(out) == reference
    assert (out / "runs" / "preset-fcn" / "seed0" / "killed-once").is_file()  # its worker died, the job ran again
    pids = {json.loads(p.read_text())["pid"] for p in (out / "jobs").glob("*.json")}
    assert os.getpid() not in pids and len(pids) >= 2  # the jobs ran in workers, not here
    assert "search epoch 1/1" in (out / "jobs" / "search-dcnas-seed0.log").read_text()  # a worker's output goes to its job's log
    # A compare killed during a search resumes in another mode (here in-process): the search continues
    # from its checkpoint, and its training (same architecture, recipe, seed) comes from the run cache.
    run = out / "runs" / "dcnas" / "seed0"
    sessions = json.loads((run / "search_cost.json").read_text())["sessions"]
    (run / "search" / "final.json").unlink()
    (run / "metrics.json").unlink()
    assert compare(out) == 0
    assert [s["resumed"] for s in json.loads((run / "search_cost.json").read_text())["sessions"]] == [s["resumed"] for s in sessions] + [True]
    logs = list((tmp_path / "cache").glob("*/*/train.jsonl"))
    assert len(logs) == 2 and all(len(log.read_text().splitlines()) == 1 for log in logs)  # each trained once, one epoch
    assert entries(out) == reference


# -------------------------------------------------------------------------------------------- Ray


def test_ray_on_a_local_cluster_gives_the_inprocess_results(inprocess, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert compare(tmp_path / "cmp", "--executor", "ray") == 0
        tasks = {json.loads(p.read_text())["pid"] for p in (tmp_path / "cmp" / "jobs").glob("*.json")}
    finally:
        ray.shutdown()
    assert entries(tmp_path / "cmp") == inprocess[0]
    assert os.getpid() not in tasks


def test_without_ray_the_error_names_the_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert compare(tmp_path / "cmp", "--executor", "ray") == 2
    assert 'pip install "archgraph[ray]"' in capsys.readouterr().err
    assert not (tmp_path / "cmp").exists()  # refused before any work
    assert compare(tmp_path / "cmp", "--jobs", "0") == 2
    assert "--jobs 0" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- the registry


def add(a: int, b: int) -> int:
    return a + b


def broken(*_: object) -> int:
    raise OSError("the disk went away")


def three_jobs() -> list:
    from archgraph.studies.executors import Job

    return [Job("one", "one", add, (1, 2)), Job("two", "two", add, (10,), deps=("one",)), Job("bad", "bad", broken)]


@pytest.fixture
def scratch_executors():
    """Executors registered by a test, forgotten afterwards."""
    from archgraph.studies.executors import EXECUTOR_REGISTRY

    EXECUTOR_REGISTRY.load()
    before = dict(EXECUTOR_REGISTRY.table)
    yield EXECUTOR_REGISTRY
    EXECUTOR_REGISTRY.table.clear()
    EXECUTOR_REGISTRY.table.update(before)


def test_the_builtins_are_registered_and_an_unknown_name_names_the_closest():
    from archgraph.errors import RegistryError
    from archgraph.studies.executors import EXECUTOR_REGISTRY, EmbeddedExecutor, RayExecutor, executor_names

    assert {"embedded", "processes", "ray"} <= set(executor_names())
    assert EXECUTOR_REGISTRY.get("embedded") is EmbeddedExecutor and EXECUTOR_REGISTRY.get("ray") is RayExecutor
    with pytest.raises(RegistryError, match=r"^unknown executor 'rey'; did you mean 'ray'\? \(available: embedded, processes, ray"):
        ExecutorSpec("rey").check()


def test_an_executor_registered_in_process_runs_a_study_s_jobs(scratch_executors, tmp_path):
    """The same Schedule calls the built-ins use: results in, a failure reported with its log, the others go on."""
    from archgraph.studies.executors import Executor, Schedule, register_executor, run_jobs

    @register_executor("backwards")
    class Backwards(Executor):  # the independent jobs last-first: the order is the executor's to choose
        def run(self, schedule: Schedule) -> None:
            todo = list(schedule.pending)
            while todo:
                job = next(j for j in reversed(todo) if schedule.ready(j))
                todo.remove(job)
                schedule.start(job, host="here")
                try:
                    schedule.done(job, schedule.call(job))
                except Exception as exc:
                    schedule.fail(job, exc)

    seen: list[tuple[str, str]] = []
    jobs = three_jobs()
    run_jobs(jobs, ExecutorSpec("backwards"), tmp_path / "jobs", lambda j: seen.append((j.key, j.state)))
    assert [(j.key, j.state, j.result) for j in jobs[:2]] == [("one", "done", 3), ("two", "done", 13)]
    assert jobs[2].state == "failed" and "OSError: the disk went away (log: " in jobs[2].error
    assert seen[:2] == [("bad", "running"), ("bad", "failed")]  # the executor's order
    assert json.loads((tmp_path / "jobs" / "one.json").read_text())["state"] == "done"


def test_an_executor_that_returns_early_fails_its_jobs_with_why(scratch_executors, tmp_path):
    from archgraph.studies.executors import Executor, register_executor, run_jobs

    @register_executor("lazy")
    class Lazy(Executor):
        def run(self, schedule) -> None:
            return None

    jobs = three_jobs()
    run_jobs(jobs, ExecutorSpec("lazy"), tmp_path / "jobs")
    assert all(j.state == "failed" and "executor 'lazy' returned without finishing this job" in j.error for j in jobs)


def test_one_duplicate_rule_and_only_executor_classes(scratch_executors):
    from archgraph.errors import ConfigError, RegistryError
    from archgraph.studies.executors import Executor, _adopt, register_executor

    class Mine(Executor):
        pass

    with pytest.raises(RegistryError, match=r"executor 'embedded' is registered twice: by archgraph\.studies\.executors:EmbeddedExecutor and by .*Mine; rename one"):
        register_executor("embedded")(Mine)
    with pytest.raises(ConfigError, match=r"executor entry point 'odd' loads .*, not an archgraph\.studies\.executors\.Executor subclass; point it at the class"):
        _adopt("odd", add)


# -------------------------------------------------------------------------------------------- the lock


def race(cache: str, barrier, results) -> None:
    """One of two processes training the same cache entry at the same moment."""
    import archgraph.engine.train as engine
    from archgraph import build_space
    from archgraph.core.decode import sample_architecture
    from archgraph.studies.runcache import trained_metrics

    trained, said = [], []
    real = engine.run_training

    def slow_training(*args, **kwargs):  # holds the lock long enough for the other to find it taken
        trained.append(1)
        time.sleep(2)
        return real(*args, **kwargs)

    engine.run_training = slow_training
    arch = sample_architecture(build_space("dcss", {"layers": 2, "base_channels": 4, "num_classes": 5}), 0)
    cfg = load_config(None, ["data.crop=[32,32]", "data.batch_size=2", "data.num_samples=4", "data.val_limit=2", "train.epochs=1", "train.steps_per_epoch=2"])
    barrier.wait()
    metrics = trained_metrics(arch, cfg, 0, cache, log=said.append)
    results.put((os.getpid(), len(trained), said, metrics["miou"]))


def test_two_processes_racing_for_one_cache_entry_train_it_once(tmp_path):
    ctx = mp.get_context("fork")  # torch is imported already: forked children start at once
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=race, args=(str(tmp_path), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert sorted(n for _, n, _, _ in got) == [0, 1]  # one trained, the other waited and read its result
    assert got[0][3] == got[1][3]
    trainer = next(pid for pid, n, _, _ in got if n == 1)
    waiter = next(said for _, n, said, _ in got if n == 0)
    assert any(f"pid {trainer}" in line and line.startswith("waiting for") for line in waiter), waiter
    (log,) = tmp_path.glob("*/*/train.jsonl")
    assert len(log.read_text().splitlines()) == 1  # one epoch, written once
