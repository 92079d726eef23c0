"""The plug-in's executor: ``archgraph compare --executor tiny_timed`` once the plug-in is installed.

An executor is an :class:`~archgraph.studies.executors.Executor` subclass named by an entry point in
group ``archgraph.executors``; the entry point is the registration (no decorator needed). Kept in its
own module so that loading the plug-in's spaces does not import archgraph's studies.
"""

from __future__ import annotations

import time

from archgraph.studies.executors import Executor, Schedule


class TinyTimed(Executor):
    """In this process, one job after the other, each job's wall time appended to ``OUT/jobs/timings.tsv``."""

    def run(self, schedule: Schedule) -> None:
        timings = schedule.board / "timings.tsv"
        for job in schedule.pending:
            if job.finished:  # failed already: a job it needs failed
                continue
            schedule.start(job)
            began = time.perf_counter()
            try:
                result = schedule.call(job)
            except Exception as exc:  # the job boundary: record the failure, fail what needs it, go on
                schedule.fail(job, exc)
                schedule.fail_dependents()
                continue
            finally:
                with open(timings, "a") as f:
                    f.write(f"{job.key}\t{time.perf_counter() - began:.3f}\n")
            schedule.done(job, result)
