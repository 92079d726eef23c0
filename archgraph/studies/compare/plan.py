"""The plan of a comparison: which runs, with which config, in which folder.

A :class:`Plan` is the base config with the strategies, seeds and baselines of ``archgraph compare``
(parsed here from ``--strategies``, ``--seeds``, ``--baselines``, ``--strategy-set`` and
``--selectors``). A strategy entry is a strategy name, or a *variant* (:attr:`Plan.variants`): an entry
name mapped to its strategy, its selector (``search.select``), config overrides for its search and
training, and overrides for its search only (a named study's ``dcnas@L8``, ``dcnas+topk:8``).
:func:`plan_runs` lists its :class:`Run` units, :func:`run_config` gives each run its config, and
:func:`check_plan` keeps a resumed comparison on the base config it started with (``compare.json``)
and refuses a plan that would drop part of the saved one (its results and report would silently lose
those entries); a plan that only adds to the saved one extends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archgraph.config import Config, config_from_dict
from archgraph.errors import ArchgraphError, ConfigError
from archgraph.io import atomic_write_json, read_json


FORMAT = "archgraph/compare-v1"
DEFAULT_STRATEGIES = ("dcnas", "pc_darts", "proxylessnas", "p_darts", "spos")
PLAN = "compare.json"


@dataclass(frozen=True)
class Baseline:
    """``preset`` (``name`` = a preset of the config's space) or ``random`` (``count`` architectures of the space)."""

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
    # entry name -> {"strategy": name, "select": spec | None, "set": {...}, "search_set": {...}} for entries
    # that are not a bare strategy name (selectors crossed in, a named study's settings)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    study: dict[str, Any] | None = None  # a named study: {"name": ..., "size": ..., "estimate": ...}

    @property
    def budget(self) -> str:
        """The budget mode every run searches with (``search.budget``; ``official`` where the config
        has no such key)."""
        return str(getattr(self.base.search, "budget", "official"))

    def strategy_of(self, entry: str) -> str:
        """The strategy an entry searches with: its variant's, or the entry's own name."""
        return self.variants.get(entry, {}).get("strategy", entry)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "config": self.base.to_dict(),
            "strategies": self.strategies,
            "seeds": self.seeds,
            "baselines": [b.__dict__ for b in self.baselines],
            "flops_band": self.flops_band,
            "flops_reference": self.flops_reference,
            "strategy_options": self.strategy_options,
            "variants": self.variants,
            "study": self.study,
            "budget": self.budget,
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
            try:
                get_preset(space, name)  # ConfigError listing the presets
            except ArchgraphError as exc:  # `randm:3`, `rand:3`: also say what the other kinds are
                raise type(exc)(f"--baselines item {item!r}: {exc}; the other baselines are `presets` (all of {space}'s), `random:N` (N random architectures) and `none`") from None
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


def parse_selectors(text: str | None, strategies: list[str]) -> dict[str, dict[str, Any]]:
    """``--selectors own,topk:8`` -> a variant per strategy and selector: ``dcnas+topk:8`` searches with
    dcnas and ``search.select=topk:8``; ``own`` keeps the bare strategy (its own rule). Each spec is
    checked with the selector registry (:func:`archgraph.engine.selection.get_selector`) where it exists."""
    specs = [s.strip() for s in str(text or "").split(",") if s.strip()]
    if not specs:
        return {}
    if len(set(specs)) != len(specs):
        raise ConfigError(f"--selectors {text!r} names a selector twice")
    try:
        from archgraph.engine.selection import get_selector
    except ImportError:  # no selector registry installed: search.select is checked by the config instead
        get_selector = None
    for spec in specs:
        if spec != "own" and get_selector is not None:
            get_selector(spec)  # ConfigError naming the selectors
    return {(s if spec == "own" else f"{s}+{spec}"): {"strategy": s, "select": None if spec == "own" else spec} for s in strategies for spec in specs}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra``'s keys over ``base``'s, nested dicts merged key by key (config sections)."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run_config(base: Config, seed: int, strategy: str | None = None, options: dict[str, dict[str, Any]] | None = None, variant: dict[str, Any] | None = None, search: bool = True) -> Config:
    """The config of one run: ``base`` with ``seed`` and, for a search, ``strategy.name``.

    The base config's strategy options apply only to the strategy it names; every other strategy
    runs with its own defaults (their papers' settings), plus what ``--strategy-set`` gives it
    (``options`` is keyed by entry, so a variant gets its own). ``variant`` (``strategy`` given as the
    entry name) sets the strategy, ``search.select``, its ``set`` overrides and, when ``search``, its
    search-only ``search_set`` overrides (the stand-alone training of its architecture does not see them)."""
    data = base.to_dict()
    data["seed"] = seed
    entry = strategy
    if variant:
        strategy = variant.get("strategy", strategy)
        data = merge(data, variant.get("set") or {})
        if search:
            data = merge(data, variant.get("search_set") or {})
        if variant.get("select") is not None:
            data["search"] = {**data["search"], "select": variant["select"]}
    if strategy is not None and strategy != base.strategy_name:
        data["strategy"] = {"name": strategy, **((variant or {}).get("set", {}).get("strategy", {}))}
    for key in dict.fromkeys((strategy, entry)):
        if key is not None and options and key in options:
            data["strategy"] = {**data["strategy"], **options[key]}
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
    runs = [Run(s, "strategy", seed, out / "runs" / entry_slug(s) / f"seed{seed}", f"{s} s{seed}") for seed in plan.seeds for s in plan.strategies]
    for b in plan.baselines:
        if b.kind == "preset":
            runs += [Run(b.entry, "preset", seed, out / "runs" / entry_slug(b.entry) / f"seed{seed}", f"{b.name} (preset) s{seed}") for seed in plan.seeds]
        else:
            for i in range(b.count):
                seed, folder = random_run(plan, out, i)
                runs.append(Run("random", "random", seed, folder, f"random #{i} s{seed}"))
    return runs


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted keys where two config dicts differ, as ``key: saved -> new``."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


def _saved_flags(saved: dict[str, Any]) -> str:
    """The command-line flags that reproduce a saved plan (for the refusal's way forward)."""
    study = saved.get("study")
    if study:
        return f"--study {study['name']} --size {study['size']}"
    baselines = ",".join(f"random:{b['count']}" if b["kind"] == "random" else f"preset:{b['name']}" for b in saved.get("baselines", [])) or "none"
    strategies = list(dict.fromkeys(saved.get("variants", {}).get(s, {}).get("strategy", s) for s in saved.get("strategies", [])))
    selects = list(dict.fromkeys(v.get("select") or "own" for v in saved.get("variants", {}).values()))
    return f"--strategies {','.join(strategies)} --seeds {','.join(map(str, saved.get('seeds', [])))} --baselines {baselines}" + (
        f" --selectors {','.join(selects)}" if selects and selects != ["own"] else ""
    )


def dropped_from(saved: dict[str, Any], plan: Plan) -> list[str]:
    """What of the saved plan the new one leaves out or changes (empty: the new plan extends it)."""
    new = plan.to_dict()
    lost = [f"strategy {s}" for s in saved.get("strategies", []) if s not in plan.strategies]
    lost += [f"seed {s}" for s in saved.get("seeds", []) if s not in plan.seeds]
    counts = {b.entry: b.count for b in plan.baselines}
    for b in saved.get("baselines", []):
        entry = "random" if b["kind"] == "random" else f"preset:{b['name']}"
        if entry not in counts:
            lost.append(f"baseline {entry}" + (f":{b['count']}" if b["kind"] == "random" else ""))
        elif b["kind"] == "random" and counts[entry] < b["count"]:
            lost.append(f"random:{b['count']} (now random:{counts[entry]})")
    for key in ("flops_band", "flops_reference"):
        if saved.get(key) != new[key]:
            lost.append(f"{key.replace('_', '-')} {saved.get(key)} (now {new[key]})")
    for name, v in (saved.get("variants") or {}).items():
        if name in plan.variants and plan.variants[name] != v:
            lost.append(f"the settings of {name}")
    return lost


def check_plan(plan: Plan, out: Path, write: bool = True) -> None:
    """A compare folder keeps its base config (resuming with another would mix incomparable runs)
    and its plan: a new plan may add strategies, seeds and baselines (the folder's plan becomes the
    larger one), never drop any (its results.md and report.html would be replaced by a part of them)."""
    path = out / PLAN
    if path.is_file():
        saved = read_json(path)
        changed = _differences(saved.get("config"), plan.base.to_dict())
        if changed or saved.get("strategy_options", {}) != plan.strategy_options:
            what = "; ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "") if changed else "--strategy-set options"
            raise ConfigError(
                f"{out} holds a comparison made with another config ({what}); rerun with the same config and --set "
                "values, --budget and --strategy-set options (see its compare.json), or choose another --out"
            )
        lost = dropped_from(saved, plan)
        if lost:
            raise ConfigError(
                f"{out} holds a comparison with a larger plan: this one leaves out {', '.join(lost)}, so its results "
                f"would replace theirs; rerun with the saved plan ({_saved_flags(saved)}; additions are fine) "
                "to resume or extend it, or choose another --out"
            )
    if write:
        atomic_write_json(path, plan.to_dict())
