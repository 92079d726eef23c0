"""``search.budget=equal-time``: the same wall clock of search steps for every strategy.

A strategy's schedules (the weight learning rate's cosine, DCNAS's temperature, the warm-up,
P-DARTS's stages) are planned on its number of epochs, so a search cut off by a clock alone would end
half-annealed. The plan is therefore made before the search:

1. **Calibration.** The strategy's supernet of every stage is built by the search's own driver
   (:class:`~archgraph.engine.driver.StrategyDriver`: the same optimisers, cost terms and
   multi-process wrapper) and ``search.calibration_steps`` steps are timed (after one untimed step)
   in a weight-only epoch and in an epoch with architecture steps, on real trainA/trainB batches.
   Every global random state is restored afterwards and the calibration's networks are discarded, so
   the search that follows is exactly the equal-steps search at the planned epochs.
2. **Plan.** The largest ``search.epochs`` whose estimated step time (per stage: warm-up epochs at the
   weight-only step time, the others at the architecture step time) fits ``search.time_budget_s``,
   with the equalised ratios (``search.warmup_epochs``, one architecture step per weight step,
   P-DARTS's stages sharing the epochs). At least the smallest schedule with an architecture step.
3. **Stop.** The loop also stops at the first step boundary past ``time_budget_s`` of measured step
   time, in the last stage (earlier stages of a multi-stage strategy are not cut: the architecture is
   derived from the last). ``final.json`` records the plan, the calibration and whether the clock cut
   the search (``time_budget``), next to what it spent.

The budget is the time of the search steps: calibration, S-mIoU reports and end-of-search selection
(SPOS's evolution) come on top and are counted in ``spent.wall_seconds``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from archgraph.config import Config, SearchConfig
from archgraph.engine import distributed as D
from archgraph.engine.checkpoint import rng_state, set_rng_state
from archgraph.engine.driver import StageParts, StrategyDriver
from archgraph.engine.smiou import SearchData, cycle, loader
from archgraph.errors import ConfigError

PLAN_FILE = "budget_plan.json"
MakeStrategy = Callable[[SearchConfig], Any]  # a strategy instance for a search config


@dataclass
class TimePlan:
    """An equal-time search's plan: the epochs it runs and what they were planned on."""

    time_budget_s: float
    epochs: int
    estimated_s: float  # estimated step time of the planned epochs
    step_seconds: list[dict[str, float]]  # per stage: {"weight_only": s, "with_arch": s} per step

    def search(self, search: SearchConfig) -> SearchConfig:
        """``search`` with the planned epochs: the config the strategy is built with."""
        return dataclasses.replace(search, epochs=self.epochs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TimePlan":
        return cls(float(d["time_budget_s"]), int(d["epochs"]), float(d["estimated_s"]), [dict(s) for s in d["step_seconds"]])


def check_time_budget(search: SearchConfig) -> None:
    if search.budget == "equal-time" and search.time_budget_s <= 0:
        raise ConfigError("search.budget=equal-time needs search.time_budget_s > 0 (seconds of search steps per search), e.g. --set search.time_budget_s=600")


def plan_equal_time(cfg: Config, make: MakeStrategy, data: SearchData, device: torch.device, precision: D.Precision, steps: int, table_out: Path | None = None) -> TimePlan:
    """Calibrate, then plan the epochs that fit ``search.time_budget_s`` (module docstring).
    ``table_out``: the search's latency table (StrategyDriver's), measured once for both."""
    check_time_budget(cfg.search)
    times = calibrate(cfg, make, data, device, precision, table_out)
    epochs, estimate = _fit(make, cfg.search, times, steps)
    return TimePlan(cfg.search.time_budget_s, epochs, estimate, [{"weight_only": w, "with_arch": a} for w, a in times])


def _estimate(strategy, times: list[tuple[float, float]], steps: int) -> float:
    total = 0.0
    for s, (weight_only, with_arch) in enumerate(times):
        warm = min(strategy.stage_warmup_epochs(s), strategy.stage_epochs(s))
        arch = weight_only if strategy.planned_arch_steps(s, 1) is None else with_arch
        total += (warm * weight_only + (strategy.stage_epochs(s) - warm) * arch) * steps
    return total


def _fit(make: MakeStrategy, search: SearchConfig, times: list[tuple[float, float]], steps: int) -> tuple[int, float]:
    """The largest epochs whose estimate fits the budget (the estimate grows with the epochs), by
    doubling then bisection; the smallest valid schedule when none fits."""
    budget = search.time_budget_s

    def estimate(epochs: int) -> float | None:
        try:
            return _estimate(make(dataclasses.replace(search, epochs=epochs)), times, steps)
        except ConfigError:  # too few epochs for the schedule (P-DARTS: an architecture epoch per stage)
            return None

    lo = next((e for e in range(search.warmup_epochs + 1, search.warmup_epochs + 65) if estimate(e) is not None), None)
    if lo is None:
        raise ConfigError("search.budget=equal-time found no valid schedule; lower search.warmup_epochs")
    first = estimate(lo)
    assert first is not None
    if first > budget:
        if D.is_main():
            print(
                f"warning: search.time_budget_s={budget:g} is shorter than the smallest schedule ({lo} epochs, about {first:.1f} s of steps); running that one, which the clock then cuts",
                file=sys.stderr,
            )
        return lo, first
    hi = lo * 2
    while (e := estimate(hi)) is not None and e <= budget and hi < 1_000_000:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        e = estimate(mid)
        lo, hi = (mid, hi) if e is not None and e <= budget else (lo, mid)
    final = estimate(lo)
    assert final is not None
    return lo, final


def calibrate(cfg: Config, make: MakeStrategy, data: SearchData, device: torch.device, precision: D.Precision, table_out: Path | None = None) -> list[tuple[float, float]]:
    """Seconds per step, (weight-only, with architecture steps), of every stage's supernet; global
    random states restored afterwards. The slowest rank's times, so every rank plans the same."""
    saved = rng_state()
    search = cfg.search
    # The calibration instance only needs a valid schedule with a warm-up and an architecture epoch.
    strategy = make(dataclasses.replace(search, epochs=search.warmup_epochs + 64))
    batches_w = cycle(loader(data.train_a, cfg, cfg.seed + 9001))
    batches_a = cycle(loader(data.train_b, cfg, cfg.seed + 9002))
    times: list[tuple[float, float]] = []
    previous = None
    # the search's own driver: each stage's supernet, optimisers, cost terms and multi-process wrapper as the search builds them
    driver = StrategyDriver(strategy, search, device=device, precision=precision, crop=tuple(cfg.data.crop), steps=search.calibration_steps + 1, table_out=table_out)
    try:
        for index in driver.stages():
            stage = driver.begin_stage(index, previous)
            stage.net.train()
            pair = []
            for epoch in (0, strategy.stage_warmup_epochs(index)):  # weight-only (when there is a warm-up), then architecture steps
                driver.begin_epoch(stage, epoch)
                pair.append(_time_steps(driver, stage, batches_w, batches_a, device, search.calibration_steps))
            times.append((pair[0], pair[1]))
            previous = stage.net
    finally:
        set_rng_state(saved)
    return [(D.max_over_ranks(w), D.max_over_ranks(a)) for w, a in times]


def _time_steps(driver: StrategyDriver, stage: StageParts, batches_w, batches_a, device: torch.device, steps: int) -> float:
    """Mean seconds of ``steps`` search steps, after one untimed step (first-call allocations). The
    batches are on the device before the clock starts (the driver's copy is then a no-op): the time
    is the step's, not the loader's or the host-to-device copy's."""
    elapsed = 0.0
    for i in range(steps + 1):
        batch_w = tuple(t.to(device) for t in next(batches_w))
        batch_a = tuple(t.to(device) for t in next(batches_a))
        _sync(device)
        t0 = time.perf_counter()
        driver.step(stage, i, batch_w, batch_a)  # the step hook, the loss scales of a multi-process step, the strategy's step
        _sync(device)
        if i:
            elapsed += time.perf_counter() - t0
    return elapsed / steps


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
