"""What the search loop and the stand-alone training loop share: seeding, interruption (Ctrl-C and
SIGTERM), progress display with one line per epoch, the log file a resumed run trims, memory, and the
data's epoch and loader workers (:func:`set_dataset_epoch` and :func:`loader_scope`, from
:mod:`archgraph.data.workers`: persistent ``data.workers`` processes for the length of a run).

The two loops differ in their step (a strategy's ``search_step`` against one SGD step) and in what
an epoch records; everything a run needs *around* its steps lives here once (STYLE.md, section 6).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from archgraph.core.measure import Timer
from archgraph.engine import distributed as D
from archgraph.engine.hooks import Hook
from archgraph.data.workers import loader_scope, set_dataset_epoch  # noqa: F401 - the loops take both from here
from archgraph.errors import Interrupted
from archgraph.io import atomic_write_text


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch, and set torch's deterministic-algorithms switch to
    ``deterministic`` either way: the switch is global to the process, and a study runs a search
    (``search.deterministic``, default on) and then trainings (``train.deterministic``, default off)
    in one process, which set only once would all have run deterministic (slower kernels on a GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


# --------------------------------------------------------------------------------------------------
# interruption


class GracefulStop:
    """Ctrl-C (SIGINT) or SIGTERM during a run: finish the current step, save, exit with a message.

    The first signal only sets a flag that the loop checks after every step, so a checkpoint is never
    written from a half-done step; a second one aborts at once (the last checkpoint stays). SIGTERM is
    what a cluster scheduler or ``kill`` sends, so it is treated like Ctrl-C. Outside the main thread
    (where signals cannot be caught) it does nothing.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, resume_command: str):
        self.resume_command = resume_command
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        import signal

        name = signal.Signals(signum).name
        print(f"\n{name}: saving a checkpoint after this step (send it again to abort without saving)", file=sys.stderr)

    def __enter__(self) -> "GracefulStop":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name)
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def exit_if_requested(self, where: str, saved: str = "checkpoint saved") -> None:
        if self.requested:  # the CLI prints this line (and no other) for it
            raise Interrupted(f"interrupted at {where}: {saved}; continue with: {self.resume_command}")


# --------------------------------------------------------------------------------------------------
# progress


def progress_bar(enabled: bool):
    """A rich progress bar (task description, bar, done/total, a free ``info`` field, times)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
    return Progress(*columns, disable=not enabled, transient=False)


def epoch_line(what: str, epoch: int, epochs: int, fields: dict[str, Any], keys: list[tuple[str, str, str]]) -> str:
    """``"search epoch 3/6: loss 0.712 | H(alpha) 1.79 | ..."``: the fields of ``keys``
    (record key, label, format) that the record has, epochs counted from 1 as everywhere a person reads."""
    parts = [f"{label} {fmt.format(fields[key])}" for key, label, fmt in keys if fields.get(key) is not None]
    return f"{what} epoch {epoch + 1}/{epochs}: " + " | ".join(parts)


class EpochLineHook(Hook):
    """One line per epoch (above the bar, or on stdout for logs) and, after the first epoch this
    process ran, how long the rest takes when it is long. The search and training each say what the
    run is called, what a line shows, how many epochs remain and how to resume (subclasses)."""

    keys: list[tuple[str, str, str]] = []  # (record key, label, format) of the line

    def __init__(self) -> None:
        self.told_length = False

    def label(self, run: Any, stage: Any) -> str:
        raise NotImplementedError

    def shown(self, record: dict[str, Any]) -> dict[str, Any]:
        return record

    def epochs_left(self, run: Any, stage: Any, epoch: int) -> int:
        return stage.epochs - epoch - 1

    def resume_command(self, run: Any) -> str:
        raise NotImplementedError

    def after_epoch(self, run: Any, stage: Any, epoch: int, record: dict[str, Any]) -> None:
        run.say(epoch_line(self.label(run, stage), epoch, stage.epochs, self.shown(record), self.keys))
        if self.told_length or not run.main:
            return
        self.told_length = True
        note = long_run_note(self.epochs_left(run, stage, epoch), float(record.get("seconds", 0.0)), self.resume_command(run))
        if note:
            run.say(note)


class EpochPrinter:
    """One line per finished epoch: above the live bar when it is shown, on stdout otherwise (so a
    run with ``--no-progress`` or written to a log file still says how it is doing)."""

    def __init__(self, bar, enabled: bool):
        self.bar = bar
        self.enabled = enabled

    def __call__(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None and not self.bar.disable:
            self.bar.console.print(line, highlight=False, markup=False)
        else:
            print(line, flush=True)


# --------------------------------------------------------------------------------------------------
# the per-epoch log


def truncate_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Keep only the log records ``keep`` accepts (a resumed run drops records of epochs its
    checkpoint does not hold, written just before a kill); a line cut by the kill is dropped."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if keep(record):
            kept.append(json.dumps(record))
    atomic_write_text(path, "".join(k + "\n" for k in kept))


LONG_RUN_SECONDS = 1800.0  # longer than this, a run says how long it will take


def long_run_note(epochs_left: int, epoch_seconds: float, resume: str) -> str | None:
    """After a run's first epoch: when the rest takes more than :data:`LONG_RUN_SECONDS` at that epoch's
    pace, one line saying about how long (a mistyped epoch count is seen at once), else ``None``."""
    seconds = epochs_left * epoch_seconds
    if seconds <= LONG_RUN_SECONDS:
        return None
    length = f"{seconds / 86400:.1f} days" if seconds >= 2 * 86400 else f"{seconds / 3600:.1f} h"
    return f"note: {epochs_left} more epochs at {epoch_seconds:.1f} s each (this epoch's pace): about {length} more; stop with Ctrl-C, continue later with `{resume}`"


# --------------------------------------------------------------------------------------------------
# the loop


class EpochLoop:
    """The one loop of search and stand-alone training: stages of epochs of steps, hooks around them.

    The loop runs steps and calls the hooks (:mod:`archgraph.engine.hooks`) at their moments; a run
    kind supplies what differs (:class:`archgraph.engine.search.SearchRun`,
    :class:`archgraph.engine.train.TrainingRun`): its stages, an epoch's batches, one step, and the
    epoch's own record. Everything else (checkpoints, S-mIoU and evaluation, the epoch's files and
    line, TensorBoard, health, the non-finite policy, a user's hooks) is a hook with its own state.

    A stage object has ``index``, ``epochs``, ``steps`` (per epoch), ``start_epoch`` and
    ``start_step`` (where a resumed run continues).
    """

    kind = "loop"  # "search" or "train": hooks that serve both read it
    stop_reason: str | None = None  # (class defaults for dataclass subclasses, whose __init__ is their own)

    def __init__(self, hooks: Any, stop: GracefulStop, bar: Any, say: EpochPrinter):
        self.hooks = hooks
        self.stop = stop
        self.bar = bar
        self.say = say
        self.stop_reason: str | None = None  # set by request_stop: the run ends after the current epoch
        self.record: dict[str, Any] = {}  # the last finished epoch's record

    # ------------------------------------------------------------------ what a run kind supplies

    def stage_indices(self) -> range:
        return range(1)

    def begin_stage(self, index: int) -> Any:
        raise NotImplementedError

    def cut_before_epoch(self, stage: Any) -> bool:
        """Whether the stage ends before its next epoch (the equal-time clock)."""
        return False

    def batches(self, stage: Any, epoch: int, first: int) -> Iterator[Any]:
        raise NotImplementedError

    def step(self, stage: Any, epoch: int, step: int, batch: Any) -> dict[str, float]:
        raise NotImplementedError

    def cut_after_step(self, stage: Any, epoch: int, done: int) -> bool:
        """Whether the epoch ends after ``done`` steps, before its planned end (the equal-time clock)."""
        return False

    def epoch_record(self, stage: Any, epoch: int, seconds: float, steps_run: int, done: int) -> dict[str, Any]:
        raise NotImplementedError

    def interrupt(self, stage: Any, epoch: int, done: int) -> None:
        """A stop was requested after ``done`` steps of ``epoch`` (not its last): save what resumes it, then exit."""

    # ------------------------------------------------------------------ the loop

    def request_stop(self, reason: str) -> None:
        """End the run after the current epoch, as a finished run (a hook's early stopping)."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.say(reason)

    def run_epochs(self) -> None:
        """Every stage's epochs, from where a resumed run stopped."""
        self.hooks.call("before_run", self)
        for index in self.stage_indices():
            stage = self.begin_stage(index)
            self.hooks.call("before_stage", self, stage)
            for epoch in range(stage.start_epoch, stage.epochs):
                if self.cut_before_epoch(stage):
                    break
                self.run_epoch(stage, epoch)
                if self.stop_reason is not None or self.epoch_was_cut():
                    break
            if self.stop_reason is not None:
                break

    def epoch_was_cut(self) -> bool:
        return False

    def run_epoch(self, stage: Any, epoch: int) -> dict[str, Any]:
        """The epoch's steps (from ``start_step`` when resumed mid-epoch), then its record and hooks."""
        first = stage.start_step if epoch == stage.start_epoch else 0
        self.hooks.call("before_epoch", self, stage, epoch)
        clock = Timer()
        done = first
        for step, batch in enumerate(self.batches(stage, epoch, first), start=first):
            losses = self.step(stage, epoch, step, batch)
            done = step + 1
            self.hooks.call("after_step", self, stage, epoch, step, losses)
            if done < stage.steps and self.cut_after_step(stage, epoch, done):
                break
            self.stop.requested = D.any_rank(self.stop.requested)  # every rank stops at the same step
            if done < stage.steps and self.stop.requested:
                self.interrupt(stage, epoch, done)
        record = self.epoch_record(stage, epoch, clock.read(), max(done - first, 1), done)
        self.hooks.call("fill_record", self, stage, epoch, record)
        self.complete_record(stage, epoch, record)
        record["seconds"] = clock.read()  # the whole epoch: steps, evaluation, the hooks' figures
        self.record = record
        self.hooks.call("after_epoch", self, stage, epoch, record)
        return record

    def complete_record(self, stage: Any, epoch: int, record: dict[str, Any]) -> None:
        """Last fields of the epoch's record, after the hooks' (e.g. what the search spent so far)."""
