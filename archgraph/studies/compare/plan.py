"""The plan of a comparison: which runs, with which config, in which folder.

A :class:`Plan` is the base config with the strategies, seeds and baselines of ``archgraph compare``
(parsed here from ``--strategies``, ``--seeds``, ``--baselines`` and ``--strategy-set``).
:func:`plan_runs` lists its :class:`Run` units, :func:`run_config` gives each run its config, and
:func:`check_plan` keeps a resumed comparison on the base config it started with (``compare.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archgraph.config import Config, config_from_dict
from archgraph.errors import ConfigError
from archgraph.io import atomic_write_json


FORMAT = "archgraph/compare-v1"
DEFAULT_STRATEGIES = ("dcnas", "pc_darts", "proxylessnas", "p_darts", "spos")
PLAN = "compare.json"


@dataclass(frozen=True)
class Baseline:
    """``preset`` (``name`` = a DCSS preset) or ``random`` (``count`` architectures of the space)."""

    kind: str
    name: str = ""
    count: int = 0

    @property
    def entry(self) -> str:
        return f"preset:{self.name}" if self.kind == "preset" else "random"


@dataclass
class Plan:
    base: Config  # config file + --set: data, search and train sections shared by every run
    strategies: list[str]
    seeds: list[int]
    baselines: list[Baseline] = field(default_factory=list)
    flops_band: float | None = None  # random baselines: keep FLOPs within +-band of the reference
    flops_reference: str | None = None  # a preset name, a strategy of the plan (its first seed), or a YAML
    cache_dir: Path | None = None  # the run cache (None: archgraph.studies.runcache.default_cache_dir())
    strategy_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # --strategy-set NAME.key=value

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "config": self.base.to_dict(), "strategies": self.strategies, "seeds": self.seeds,
            "baselines": [b.__dict__ for b in self.baselines], "flops_band": self.flops_band,
            "flops_reference": self.flops_reference, "strategy_options": self.strategy_options,
        }


def parse_strategies(text: str) -> list[str]:
    from archgraph.core.registry import get_strategy

    names = [s.strip() for s in str(text).split(",") if s.strip()]
    if not names:
        raise ConfigError("--strategies is empty; name at least one, e.g. --strategies dcnas,pc_darts")
    for n in names:
        get_strategy(n)  # ConfigError naming the registered strategies
    if len(set(names)) != len(names):
        raise ConfigError(f"--strategies {text!r} names a strategy twice")
    return names


def parse_seeds(text: str | int, base_seed: int = 0) -> list[int]:
    """``3`` -> three seeds from the config's seed on; ``0,4,7`` -> exactly these."""
    raw = str(text).strip()
    try:
        if "," in raw:
            seeds = [int(s) for s in raw.split(",") if s.strip()]
        else:
            n = int(raw)
            if n < 1:
                raise ValueError
            seeds = [base_seed + i for i in range(n)]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give a count (--seeds 3) or a list (--seeds 0,1,2)") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r}: give distinct seeds")
    return seeds


def parse_baselines(text: str | None, space: str = "dcss") -> list[Baseline]:
    """``presets`` (all of ``space``'s), ``preset:NAME`` or a bare preset name, ``random:N``;
    comma-separated; ``none``."""
    from archgraph.core.registry import get_preset
    from archgraph.core.spaces_api import preset_names

    out: list[Baseline] = []
    for item in (s.strip() for s in str(text or "").split(",")):
        if not item or item == "none":
            continue
        if item == "presets":
            out += [Baseline("preset", n) for n in preset_names(space)]
        elif item.startswith("random"):
            _, _, count = item.partition(":")
            try:
                n = int(count or 5)
                if n < 1:
                    raise ValueError
            except ValueError:
                raise ConfigError(f"--baselines item {item!r}: write random:N with N >= 1, e.g. random:5") from None
            out.append(Baseline("random", count=n))
        else:
            name = item.split(":", 1)[1] if item.startswith("preset:") else item
            get_preset(space, name)  # ConfigError listing the presets
            out.append(Baseline("preset", name))
    seen: set[str] = set()
    unique = [b for b in out if not (b.entry in seen or seen.add(b.entry))]
    return unique


def parse_strategy_options(items: list[str], strategies: list[str]) -> dict[str, dict[str, Any]]:
    """``["spos.population=8", "dcnas.paths=2"]`` -> per-strategy option overrides (values as YAML).

    Each is checked against that strategy's options now, so a typo fails before any run starts."""
    from archgraph.config import parse_overrides
    from archgraph.configtools import dataclass_from_dict
    from archgraph.core.registry import get_strategy

    options: dict[str, dict[str, Any]] = {}
    for name, values in parse_overrides(items).items():
        if name not in strategies:
            raise ConfigError(f"--strategy-set {name}.*: {name!r} is not one of --strategies ({', '.join(strategies)})")
        if not isinstance(values, dict):
            raise ConfigError(f"--strategy-set {name}={values!r}: write NAME.key=value, e.g. spos.population=8")
        dataclass_from_dict(get_strategy(name).params, values, "strategy")
        options[name] = values
    return options


def run_config(base: Config, seed: int, strategy: str | None = None, options: dict[str, dict[str, Any]] | None = None) -> Config:
    """The config of one run: ``base`` with ``seed`` and, for a search, ``strategy.name``.

    The base config's strategy options apply only to the strategy it names; every other strategy
    runs with its own defaults (their papers' settings), plus what ``--strategy-set`` gives it."""
    data = base.to_dict()
    data["seed"] = seed
    if strategy is not None and strategy != base.strategy_name:
        data["strategy"] = {"name": strategy}
    if strategy is not None and options and strategy in options:
        data["strategy"] = {**data["strategy"], **options[strategy]}
    return config_from_dict(data)


@dataclass
class Run:
    """One unit of the comparison: a search + training, or the training of a baseline."""

    entry: str  # "dcnas", "preset:hrnet", "random"
    kind: str  # strategy | preset | random
    seed: int
    folder: Path
    label: str  # a row label: "dcnas s0", "random #2 s1"
    status: str = "pending"  # pending | search | train | done | failed
    result: dict[str, Any] = field(default_factory=dict)
    started: float | None = None
    error: str | None = None
    train_log: Path | None = None  # the cache entry's train.jsonl, for the live table
    jobs: dict[str, str] = field(default_factory=dict)  # phase (search, train) -> its job's state, for the live table


def entry_slug(entry: str) -> str:
    """An entry as a folder or file name: ``preset:hrnet`` -> ``preset-hrnet``."""
    return entry.replace(":", "-")


def random_run(plan: Plan, out: Path, index: int) -> tuple[int, Path]:
    """The seed and the folder of random architecture ``index``: each is trained once, the plan's
    seeds taken in turn."""
    seed = plan.seeds[index % len(plan.seeds)]
    return seed, out / "runs" / f"random-{index}" / f"seed{seed}"


def plan_runs(plan: Plan, out: Path) -> list[Run]:
    runs = [Run(s, "strategy", seed, out / "runs" / s / f"seed{seed}", f"{s} s{seed}") for seed in plan.seeds for s in plan.strategies]
    for b in plan.baselines:
        if b.kind == "preset":
            runs += [Run(b.entry, "preset", seed, out / "runs" / entry_slug(b.entry) / f"seed{seed}", f"{b.name} (preset) s{seed}") for seed in plan.seeds]
        else:
            for i in range(b.count):
                seed, folder = random_run(plan, out, i)
                runs.append(Run("random", "random", seed, folder, f"random #{i} s{seed}"))
    return runs


def check_plan(plan: Plan, out: Path) -> None:
    """A compare folder keeps its base config: resuming with another would mix incomparable runs."""
    path = out / PLAN
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("config") != plan.base.to_dict() or saved.get("strategy_options", {}) != plan.strategy_options:
            raise ConfigError(f"{out} holds a comparison made with another config; rerun with the same config and --set "
                              "values and --strategy-set options (see its compare.json), or choose another --out")
    atomic_write_json(path, plan.to_dict())
