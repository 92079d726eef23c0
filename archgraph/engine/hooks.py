"""Hooks: what a loop does around its steps, each concern one object with its own state.

The search loop and the stand-alone training loop (:class:`archgraph.engine.loop.EpochLoop`) run
steps and nothing else; every other concern of a run is a hook: the epoch's S-mIoU, the health
figures, the files of an epoch, TensorBoard, the one line per epoch, checkpoints, the non-finite
policy, the watch history, and a user's own (MLflow, W&B, early stopping). A hook implements only the
moments it cares about; the loop calls every hook at each moment, in the order of its list:

==================  ==============================================================================
``before_run``      once, after set-up (a resumed run: after its state was restored)
``before_stage``    a stage's supernet and optimisers exist (search: P-DARTS has three stages)
``before_epoch``    before the epoch's first step
``after_step``      after each step, with the step's losses (numbers, already on the host)
``fill_record``     the epoch's record is being written: add fields to it (in hook order)
``after_epoch``     the record is complete: write, print, track, checkpoint (in hook order)
``on_nonfinite``    a step raised :class:`~archgraph.errors.NonFiniteLoss`: return losses to go on
                    with (the batch skipped) or ``None`` to let the next hook (or the error) decide
``after_run``       once, with the run's result (final.json's or metrics.json's content)
==================  ==============================================================================

A hook that must survive a resume names itself (:attr:`Hook.name`) and implements
``state_dict``/``load_state_dict``: the loop's checkpoint keeps every named hook's state under its
name. A hook may end the run early (:meth:`~archgraph.engine.loop.EpochLoop.request_stop`): the
current epoch finishes, is recorded and checkpointed, and the run ends as a finished run does.

**Your own hooks** plug in two ways: in Python, ``run_search(cfg, out, hooks=[MyHook()])`` /
``run_training(cfg, graph, out, hooks=[...])``; from the command line and YAML, by name, through the
registry below (entry-point group ``archgraph.hooks``, like every other kind: docs/plugins.md) and
``search.hooks`` / ``train.hooks`` (specs such as ``early_stopping:patience=3``). A registered hook is
a class (or factory) called with the spec's ``key=value`` arguments as strings.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

from archgraph.core.registry import Registry
from archgraph.errors import ConfigError

ENTRY_POINT_GROUP = "archgraph.hooks"


class Hook:
    """One concern of a loop (module docstring). Every method is optional; ``loop`` is the
    :class:`~archgraph.engine.loop.EpochLoop` running (``loop.kind`` is ``"search"`` or ``"train"``)."""

    name: str | None = None  # set to keep state across a resume (the checkpoint key)

    def before_run(self, loop: Any) -> None: ...

    def before_stage(self, loop: Any, stage: Any) -> None: ...

    def before_epoch(self, loop: Any, stage: Any, epoch: int) -> None: ...

    def after_step(self, loop: Any, stage: Any, epoch: int, step: int, losses: dict[str, float]) -> None: ...

    def fill_record(self, loop: Any, stage: Any, epoch: int, record: dict[str, Any]) -> None: ...

    def after_epoch(self, loop: Any, stage: Any, epoch: int, record: dict[str, Any]) -> None: ...

    def on_nonfinite(self, loop: Any, error: Exception, where: str) -> dict[str, float] | None:
        return None

    def after_run(self, loop: Any, result: dict[str, Any]) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Hooks:
    """The hooks of one loop, called in order at each moment; their states, keyed by name."""

    def __init__(self, hooks: Iterable[Hook] = ()):
        self.items: list[Hook] = []
        for hook in hooks:
            self.add(hook)

    def add(self, hook: Hook) -> None:
        if not isinstance(hook, Hook):
            raise ConfigError(f"{hook!r} is not an archgraph hook; subclass archgraph.engine.hooks.Hook (docs/plugins.md, 'Hooks')")
        if hook.name and any(h.name == hook.name for h in self.items):
            raise ConfigError(f"two hooks are named {hook.name!r}; a hook's name keys its state in the checkpoint, so it must be unique")
        self.items.append(hook)

    def __iter__(self):
        return iter(self.items)

    def call(self, moment: str, *args: Any) -> None:
        for hook in self.items:
            getattr(hook, moment)(*args)

    def on_nonfinite(self, loop: Any, error: Exception, where: str) -> dict[str, float] | None:
        for hook in self.items:
            losses = hook.on_nonfinite(loop, error, where)
            if losses is not None:
                return losses
        return None

    def state_dict(self) -> dict[str, Any]:
        return {h.name: h.state_dict() for h in self.items if h.name}

    def load_state_dict(self, states: dict[str, Any] | None) -> None:
        for hook in self.items:
            if hook.name and states and hook.name in states:
                hook.load_state_dict(states[hook.name])


# --------------------------------------------------------------------------------------------------
# hooks by name (search.hooks / train.hooks)


def _adopt(name: str, obj: Any) -> Any:
    if inspect.isclass(obj) and not issubclass(obj, Hook):
        raise ConfigError(f"{obj.__module__}.{obj.__qualname__} is not a subclass of archgraph.engine.hooks.Hook")
    return obj


HOOK_REGISTRY: Registry[Callable[..., Hook]] = Registry("hook", ENTRY_POINT_GROUP, adopt=_adopt, hint="declare it under the entry-point group 'archgraph.hooks' (docs/plugins.md)")


def register_hook(name: str) -> Callable[[Callable[..., Hook]], Callable[..., Hook]]:
    """Register a hook class (or factory) under ``name`` for ``search.hooks`` / ``train.hooks``."""

    def deco(factory: Callable[..., Hook]) -> Callable[..., Hook]:
        if not name or ":" in name or "," in name:
            raise ConfigError(f"hook name {name!r}: use a plain identifier (no ':' or ',')")
        HOOK_REGISTRY.add(name, factory)
        return factory

    return deco


def parse_hook_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"early_stopping:patience=3:metric=miou"`` -> ``("early_stopping", {"patience": "3", "metric": "miou"})``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"hook spec {spec!r}: write a registered hook's name, optionally with key=value arguments (e.g. early_stopping:patience=3)")
    name, *args = [part.strip() for part in spec.split(":")]
    kwargs: dict[str, str] = {}
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq or not key:
            raise ConfigError(f"hook spec {spec!r}: argument {arg!r} is not key=value (e.g. {name}:patience=3)")
        kwargs[key] = value
    return name, kwargs


def make_hook(spec: str, section: str) -> Hook:
    """The hook a ``search.hooks`` / ``train.hooks`` entry names; one-line errors naming the fix."""
    name, kwargs = parse_hook_spec(spec)
    factory = HOOK_REGISTRY.get(name, f"hook in {section}.hooks")
    try:
        hook = factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{section}.hooks entry {spec!r}: {exc}") from None
    if not isinstance(hook, Hook):
        raise ConfigError(f"{section}.hooks entry {spec!r} made {hook!r}, not an archgraph.engine.hooks.Hook")
    return hook


def hooks_from_config(specs: Iterable[str], section: str) -> list[Hook]:
    return [make_hook(spec, section) for spec in specs or ()]


# --------------------------------------------------------------------------------------------------
# a built-in user hook


@register_hook("early_stopping")
class EarlyStopping(Hook):
    """Stop a run whose watched figure has not improved for ``patience`` records that carry it.

    ``metric``: a field of the epoch record (by default ``miou`` in training, measured every
    ``train.eval_every`` epochs, and ``s_miou`` in a search, measured every ``search.eval_every``;
    any other field, e.g. ``loss``, by name); ``mode``: ``max`` or ``min``; ``min_delta``: the
    smallest change that counts as an improvement. The stopped run finishes as a finished one does
    (training: metrics.json from best.pt), and its record says why it stopped. A run none of whose
    records carried the metric ends with a warning saying so: the hook could never have fired.
    """

    name = "early_stopping"

    def __init__(self, patience: str | int = 3, metric: str | None = None, mode: str = "max", min_delta: str | float = 0.0):
        try:
            self.patience, self.min_delta = int(patience), float(min_delta)
        except ValueError:
            raise ConfigError(f"early_stopping: patience={patience!r} and min_delta={min_delta!r} must be numbers") from None
        if self.patience < 1:
            raise ConfigError(f"early_stopping: patience={self.patience} must be >= 1")
        if mode not in ("max", "min"):
            raise ConfigError(f"early_stopping: mode={mode!r}: choose max or min")
        self.metric, self.mode = metric, mode
        self.best: float | None = None
        self.waited = 0
        self.fields: set[str] = set()  # what this run's records carried (for the warning)

    def before_run(self, loop: Any) -> None:
        if self.metric is None:  # a search loop has a strategy; its quality figure is S-mIoU
            self.metric = "s_miou" if hasattr(loop, "strategy") else "miou"

    def after_epoch(self, loop: Any, stage: Any, epoch: int, record: dict[str, Any]) -> None:
        value = record.get(self.metric)
        if not isinstance(value, (int, float)):
            self.fields.update(k for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
            return
        better = self.best is None or (value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta)
        if better:
            self.best, self.waited = float(value), 0
            return
        self.waited += 1
        if self.waited >= self.patience:
            loop.request_stop(f"early_stopping: {self.metric} has not improved on {self.best:.4g} for {self.waited} records")

    def after_run(self, loop: Any, result: dict[str, Any]) -> None:
        if self.best is None and self.fields:
            import sys

            print(
                f"warning: early_stopping watched {self.metric!r}, which no epoch record of this run carried, so it could not stop the run; "
                f"name one that is recorded with metric=... (numeric fields seen: {', '.join(sorted(self.fields))})",
                file=sys.stderr,
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "waited": self.waited}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.waited = state.get("best"), int(state.get("waited", 0))
