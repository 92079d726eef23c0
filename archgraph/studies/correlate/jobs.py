"""The correlation study as jobs, for :func:`archgraph.studies.executors.run_jobs`.

The jobs, in dependency order:

1. ``search`` (only when the study searches itself): :func:`archgraph.engine.search.run_search` in
   ``DIR/search``, resumed from its checkpoint after a kill;
2. ``score``: the supernet loaded back once, the pool pre-scored, the candidates picked and scored with
   the shared weights (one job, because every scoring needs the same loaded supernet and each takes a
   fraction of a second; loading it once per architecture would cost more than the scoring);
3. ``train-<i>`` for each of the N candidates: the stand-alone training of candidate ``i`` of the
   score job's result (through the run cache, under its entry's lock).

:func:`run_correlate` builds them, runs them with the chosen executor and computes the statistics
here, from the jobs' results: the same numbers as :func:`~archgraph.studies.correlate.study.run_study`
for the same seeds, in any mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from archgraph.config import Config
from archgraph.errors import ArchgraphError
from archgraph.studies.correlate.study import StudyOptions, finish_study, score_candidates, train_candidate
from archgraph.studies.executors import ExecutorSpec, Job, run_jobs

JOBS = "jobs"  # DIR/jobs/: each job's log and state


@dataclass
class StudyJobs:
    """What the jobs need: where the search is (and whether to run it), the recipe, the cache."""

    run_dir: Path  # the search folder (DIR/search, or --search-dir)
    search_cfg: Config | None  # the config to search with; None: the search is finished
    resume: bool  # the search resumes from its checkpoint
    config_path: str | None  # CONFIG and --set: the stand-alone recipe is the search's config with their train.*
    overrides: tuple[str, ...]
    cache_dir: Path
    progress: bool = False  # progress bars (the embedded mode only; a worker's output goes to its log)


def search_job(cfg: Config, run_dir: Path, resume: bool, progress: bool) -> str:
    """The study's search, under the study folder's lock; returns the search folder."""
    from archgraph.engine.search import run_search
    from archgraph.studies.runcache import folder_lock

    with folder_lock(run_dir.parent):
        if not (run_dir / "final.json").is_file():
            run_search(cfg, run_dir, resume=resume, progress=progress)
    return str(run_dir)


def score_job(study: StudyJobs, out: Path, opts: StudyOptions, *search: Any) -> dict[str, Any]:
    """Load the supernet, pick and score the candidates (``search``: the search job's result, if any)."""
    from archgraph.studies.correlate.supernet import load_searched_supernet

    sup = load_searched_supernet(study.run_dir)
    train_cfg = standalone_recipe(sup.cfg, study.config_path, study.overrides, study.run_dir)
    scored = score_candidates(sup, train_cfg, out, opts, study.cache_dir, log=_say)
    scored["train_cfg"] = train_cfg
    return scored


def train_job(study: StudyJobs, index: int, scored: dict[str, Any]) -> dict[str, Any]:
    """Candidate ``index``'s stand-alone metrics (trained, resumed or from the cache)."""
    return train_candidate(scored["cands"], index, scored["train_cfg"], scored["seed"], study.cache_dir, log=_say, progress=study.progress)


def first_difference(a: dict[str, Any], b: dict[str, Any], ignore: tuple[str, ...]) -> str | None:
    """The first top-level config section that differs between two config dicts."""
    for key in sorted(set(a) | set(b)):
        if key not in ignore and a.get(key) != b.get(key):
            return key
    return None


def standalone_recipe(search_cfg: Config, config_path: str | None, overrides: tuple[str, ...], run_dir: Path) -> Config:
    """The stand-alone recipe: the search's config with train.* (only) changed by CONFIG/--set."""
    from archgraph.config import load_config
    from archgraph.errors import ConfigError

    train_cfg = load_config(config_path, list(overrides), base=search_cfg.to_dict())
    section = first_difference(search_cfg.to_dict(), train_cfg.to_dict(), ("train", "device"))
    if section is not None:
        raise ConfigError(
            f"CONFIG/--set change the {section!r} section of the finished search {run_dir}; only train.* may change here "
            "(the supernet was trained and is scored with the search's data). Search again with the new settings instead"
        )
    return train_cfg


def _say(message: str) -> None:
    print(message, flush=True)


def study_jobs(study: StudyJobs, out: Path, opts: StudyOptions) -> list[Job]:
    """The jobs of one study, in dependency order."""
    jobs: list[Job] = []
    deps: tuple[str, ...] = ()
    if study.search_cfg is not None:
        jobs.append(Job("search", "search", search_job, (study.search_cfg, study.run_dir, study.resume, study.progress)))
        deps = ("search",)
    jobs.append(Job("score", "supernet scoring", score_job, (study, out, opts), deps=deps))
    for i in range(opts.archs):
        label = "stand-alone #1 (derived)" if i == 0 else f"stand-alone #{i + 1}"
        jobs.append(Job(f"train-{i}", label, train_job, (study, i), deps=("score",)))
    return jobs


def run_correlate(study: StudyJobs, out: Path, opts: StudyOptions, spec: ExecutorSpec, notify: Callable[[Job], None] | None = None) -> dict[str, Any]:
    """Run the study's jobs with ``spec``'s executor; the statistics and outputs from their results.

    A failed job is reported with its error and log; the others still run (their results stay in the
    run cache), and the study raises at the end naming each failure, since a correlation over some
    of the architectures would not be the study asked for. Running it again retries them."""
    opts.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = study_jobs(study, out, opts)
    scored_at: list[float] = []

    def told(job: Job) -> None:
        if job.key == "score" and job.finished:
            scored_at.append(time.perf_counter())
        if notify is not None:
            notify(job)

    run_jobs(jobs, spec, out / JOBS, told)
    failed = [j for j in jobs if j.state == "failed"]
    if failed:
        lines = "; ".join(f"{j.label}: {j.error}" for j in failed)
        raise ArchgraphError(f"{len(failed)} of {len(jobs)} jobs of the study failed ({lines}); fix the cause and run the same command again to retry them")
    by_key = {j.key: j for j in jobs}
    scored = by_key["score"].result
    standalone = [by_key[f"train-{i}"].result for i in range(opts.archs)]
    return finish_study(scored, standalone, scored["train_cfg"], out, opts, study.cache_dir, time.perf_counter() - scored_at[0])
