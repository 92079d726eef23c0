"""The ``resume`` check: a search killed mid-epoch and resumed ends bit-identical to an uninterrupted one.

Unlike the other checks, it runs the real search loop (:func:`archgraph.engine.search.run_search` on
the synthetic dataset, a checkpoint after every step), three times: once uninterrupted, with the
strategy subclassed to log its stages, epochs and steps; once killed right before the second step of
the middle epoch (a checkpoint written mid-epoch); once resumed from that kill. arch.yaml,
scores.json, every supernet tensor and the strategy's state must then match bit for bit: state kept
outside ``state_dict`` (a sampler's generator) is what it catches. Its own module because it alone
needs the whole engine, temporary run folders and a strategy registered under another class for a
while.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import networkx as nx
import torch

from archgraph.config import SearchConfig, load_config
from archgraph.configtools import dataclass_from_dict
from archgraph.core.registry import STRATEGIES, StrategyInfo
from archgraph.testing.harness import max_abs_diff, quiet_build
from archgraph.testing.report import CheckFailed

__all__ = ["RESUME_BUDGETS", "RESUME_RUN", "check_resume"]

RESUME_RUN = [  # the resume check's searches, a checkpoint after every step; epochs and steps: _resume_budget
    "data.name=synthetic",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "data.val_limit=2",
    "search.warmup_epochs=1",
    "search.bn_recalib_batches=1",
    "search.checkpoint_every=1",
    "search.eval_every=0",
]
# (epochs, steps per epoch) tried in turn until the strategy plans an architecture step (ProxylessNAS
# takes one after every 5 steps)
RESUME_BUDGETS = ((2, 2), (2, 3), (2, 4), (2, 5), (3, 5))


class _Killed(BaseException):
    """Raised inside a search to stop it as a kill would (no handler runs, the last checkpoint stays)."""


def _instrumented(cls: type, events: list[tuple[str, int]], kill_at: int | None) -> type:
    """A subclass of strategy ``cls`` that logs stages, epochs and steps into ``events`` and, when
    ``kill_at`` is given, dies right before its ``kill_at``-th step (1-based)."""

    class Instrumented(cls):  # type: ignore[misc, valid-type]
        def begin_stage(self, stage, previous):
            events.append(("stage", stage))
            return super().begin_stage(stage, previous)

        def on_epoch_start(self, epoch, epochs):
            events.append(("epoch", epoch))
            return super().on_epoch_start(epoch, epochs)

        def on_step_start(self, step, steps_per_epoch):
            if kill_at is not None and sum(kind == "step" for kind, _ in events) + 1 == kill_at:
                raise _Killed
            events.append(("step", step))
            return super().on_step_start(step, steps_per_epoch)

    Instrumented.__name__ = Instrumented.__qualname__ = f"Checked{cls.__name__}"
    return Instrumented


@contextlib.contextmanager
def _registered_as(name: str, cls: type):
    """Strategy ``name`` temporarily resolving to ``cls`` (the config keeps naming the real one)."""
    original = STRATEGIES[name]
    STRATEGIES[name] = replace(original, cls=cls)
    try:
        yield
    finally:
        STRATEGIES[name] = original


def _kill_point(events: list[tuple[str, int]]) -> tuple[int, str]:
    """The step to kill at (1-based): the second step of the middle epoch (a checkpoint written
    mid-epoch), and where that is."""
    stage, epoch, starts = 0, 0, []
    count = 0
    for kind, value in events:
        if kind == "stage":
            stage = value
        elif kind == "epoch":
            epoch = value
            starts.append((count, stage, epoch))
        else:
            count += 1
    if count < 2:
        raise CheckFailed(f"the search ran {count} step(s); the resume check needs at least 2")
    first, stage, epoch = starts[len(starts) // 2]
    kill = min(first + 2, count)
    staged = f"stage {stage + 1} " if any(kind == "stage" and value > 0 for kind, value in events) else ""
    return kill, f"{staged}epoch {epoch + 1} step {kill - first}"


def _search(name: str, overrides: list[str], out: Path, resume: bool) -> None:
    from archgraph.engine.search import run_search

    buffer = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        warnings.simplefilter("ignore")
        run_search(load_config(None, overrides), out, resume=resume, progress=False)


def _same(a: Any, b: Any, where: str = "") -> str | None:
    """Where two checkpoint values differ (tensors bit for bit), or None."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape or not torch.equal(a, b):
            extra = f" by {max_abs_diff(a.double(), b.double()):.3g}" if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and a.is_floating_point() else ""
            return f"{where or 'value'} differs{extra}"
        return None
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{where}{'.' if where else ''}{k} is in one run only"
            found = _same(a[k], b[k], f"{where}{'.' if where else ''}{k}")
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where} has {len(a)} entries in one run, {len(b)} in the other"
        for i, (u, v) in enumerate(zip(a, b)):
            found = _same(u, v, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{where or 'value'} differs ({a!r} against {b!r})"


def _resume_budget(info: StrategyInfo, graph: nx.DiGraph, options: Mapping[str, Any], seed: int) -> tuple[int, int]:
    """The smallest (epochs, steps per epoch) of :data:`RESUME_BUDGETS` in which the strategy plans
    an architecture step (the search refuses a budget without one)."""
    params = dataclass_from_dict(info.params, dict(options), "strategy")
    for epochs, steps in RESUME_BUDGETS:
        strategy = quiet_build(info, graph, params, SearchConfig(epochs=epochs, warmup_epochs=1), seed)
        planned = [strategy.planned_arch_steps(s, steps) for s in range(strategy.num_stages())]
        if any(p is None for p in planned) or sum(planned) > 0:
            return epochs, steps
    raise CheckFailed(f"planned_arch_steps promises no architecture step in any of the budgets {list(RESUME_BUDGETS)} (epochs, steps per epoch; the first epoch weight-only)")


def check_resume(info: StrategyInfo, graph: nx.DiGraph, space: str, space_params: Mapping[str, Any], options: Mapping[str, Any], seed: int) -> tuple[str, str]:
    """The check (module docstring): its verdict and reason, or :class:`CheckFailed` naming where the runs part."""
    name = info.name
    epochs, steps = _resume_budget(info, graph, options, seed)
    budget = [f"search.epochs={epochs}", f"search.steps_per_epoch={steps}", f"data.num_samples={4 * steps}"]  # trainA: 2 x steps images
    overrides = [
        *RESUME_RUN,
        *budget,
        f"seed={seed}",
        f"space.name={space}",
        f"strategy.name={name}",
        *(f"space.{k}={json.dumps(v)}" for k, v in space_params.items()),
        *(f"strategy.{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in options.items()),
    ]
    with tempfile.TemporaryDirectory(prefix="archgraph-check-") as tmp:
        full, killed = Path(tmp) / "uninterrupted", Path(tmp) / "killed"
        events: list[tuple[str, int]] = []
        with _registered_as(name, _instrumented(info.cls, events, None)):
            _search(name, overrides, full, False)
        kill_at, where = _kill_point(events)
        with _registered_as(name, _instrumented(info.cls, [], kill_at)):
            try:
                _search(name, overrides, killed, False)
            except _Killed:
                pass
            else:
                raise CheckFailed(f"the search did not reach its step {kill_at} a second time (it ran {kill_at - 1} steps before)")
        if (killed / "final.json").exists():
            raise CheckFailed("the killed search wrote final.json")
        _search(name, overrides, killed, True)
        for file in ("arch.yaml", "scores.json"):
            if (full / file).read_text() != (killed / file).read_text():
                raise CheckFailed(
                    f"killed before {where} and resumed, the search ends with another {file} than an uninterrupted one (state kept outside state_dict, e.g. a sampler's generator, is lost on resume)"
                )
        a = torch.load(full / "checkpoint.pt", weights_only=True)
        b = torch.load(killed / "checkpoint.pt", weights_only=True)
        for part in ("net", "strategy"):
            found = _same(a[part], b[part], "")
            if found:
                raise CheckFailed(
                    f"killed before {where} and resumed: {'supernet tensor' if part == 'net' else 'strategy state'} "
                    f"{found} (state kept outside state_dict, e.g. a sampler's generator, is lost on resume)"
                )
    steps = sum(kind == "step" for kind, _ in events)
    return "PASS", (f"a search of {steps} steps killed before {where} and resumed ends bit-identical to an uninterrupted one (arch.yaml, scores.json, every supernet tensor, the strategy's state)")
