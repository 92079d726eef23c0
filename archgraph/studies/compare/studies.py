"""Named studies: the DCNAS paper's comparisons as ready plans (``archgraph compare --study NAME``).

A study fixes the strategy entries (as :attr:`Plan.variants <archgraph.studies.compare.plan.Plan.variants>`:
an entry name, its strategy, and the settings that make it that entry), the seeds, the baselines and,
per *size*, the config overrides:

- ``dcnas-table5``: the paper's Table 5, the five strategies DCNAS compares with in its own space
  (``dcnas``, ``pc_darts``, ``proxylessnas``, ``p_darts``, ``spos``) at L = 8, 10, 12, 14
  (entries ``dcnas@L8`` ... ``spos@L14``: 20 entries). Random architectures are drawn from the base
  config's space (L = 14); each strategy is tested against them only where its space is the same.
- ``dcnas-table6``: the DCNAS ablation switches, as options of this implementation: ``dcnas`` (the
  full method: path sampling n = 4, channel ratio 1/4, proxyless, dense), ``dcnas@all-paths`` (no
  path sampling: every input, ``strategy.paths`` at the largest in-degree), ``dcnas@all-channels``
  (channel ratio 1), ``dcnas@proxy`` (both switched off, which only fits in memory on a low-resolution
  proxy: the search runs at half ``data.scale``, the stand-alone training at the full one) and
  ``dcnas@previous`` (``space.connectivity=previous``: each node sees only the previous layer).

Sizes: ``gpu`` is the paper's search schedule (160 epochs, 40 of them weight-only warm-up, F = 8 as
the search's proxy width, 3 seeds, ``device=cuda``; the dataset is yours to name with ``--set``);
``cpu`` keeps the entries (every L, every switch) and shrinks everything else (F = 4, 32x32 crops of
the synthetic data, 2 short epochs, one seed, SPOS's evolution cut down, ProxylessNAS's architecture
step every step instead of every 5th, which 2 steps per epoch would never reach) so that
the study exercises every entry on 2 CPU cores in minutes (:data:`STUDIES`' ``estimate``). Its
numbers show that the study runs, not which method is better. ``--set`` values given with ``--study``
override the size's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from archgraph.errors import ConfigError

TABLE5_STRATEGIES = ("dcnas", "pc_darts", "proxylessnas", "p_darts", "spos")
TABLE5_LAYERS = (8, 10, 12, 14)
SIZES = ("cpu", "gpu")

# A tiny but complete search: 2 epochs (1 warm-up), 2 steps each, architecture steps every step.
_CPU_COMMON = [
    "data.name=synthetic",
    "data.num_samples=16",
    "data.crop=[32,32]",
    "data.batch_size=2",
    "data.val_limit=4",
    "space.base_channels=4",
    "search.epochs=2",
    "search.warmup_epochs=1",
    "search.steps_per_epoch=2",
    "search.bn_recalib_batches=1",
    "search.eval_every=0",
    "train.epochs=2",
    "train.steps_per_epoch=4",
    "train.eval_every=2",
]
_GPU_COMMON = ["device=cuda", "space.base_channels=8", "search.epochs=160", "search.warmup_epochs=40", "train.epochs=500"]
# Strategy options that shrink what the common keys do not reach (cpu size only).
_CPU_OPTIONS = {
    "spos": {"population": 4, "generations": 2, "select": 2, "mutation": 2, "crossover": 2, "recalib_batches": 1},
    "proxylessnas": {"arch_every": 1},
}


@dataclass(frozen=True)
class Study:
    """A named plan: entries (name -> variant), seeds and baselines per size, config overrides per size."""

    name: str
    what: str
    entries: Callable[[str], dict[str, dict[str, Any]]]  # size -> entry name -> variant
    overrides: dict[str, list[str]]  # size -> --set items
    seeds: dict[str, str]  # size -> --seeds
    baselines: dict[str, str]  # size -> --baselines
    estimate: dict[str, str]  # size -> how long it takes, as measured or reckoned
    options: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # size -> entry -> strategy options


def _table5(size: str) -> dict[str, dict[str, Any]]:
    entries = {}
    for layers in TABLE5_LAYERS:
        for s in TABLE5_STRATEGIES:
            entries[f"{s}@L{layers}"] = {"strategy": s, "set": {"space": {"layers": layers}, **({"strategy": _CPU_OPTIONS[s]} if size == "cpu" and s in _CPU_OPTIONS else {})}}
    return entries


def _table6(size: str) -> dict[str, dict[str, Any]]:
    layers = 14 if size == "gpu" else 4
    every_input = 4 * layers  # the largest in-degree of a dense DCSS node (4 scales x the earlier layers)
    half = "0.5"  # of data.scale, for the search only (a low-resolution proxy)
    return {
        "dcnas@full": {"strategy": "dcnas"},
        "dcnas@all-paths": {"strategy": "dcnas", "set": {"strategy": {"paths": every_input}}},
        "dcnas@all-channels": {"strategy": "dcnas", "set": {"strategy": {"channel_ratio": 1.0}}},
        "dcnas@proxy": {"strategy": "dcnas", "set": {"strategy": {"paths": every_input, "channel_ratio": 1.0}}, "search_scale": float(half)},
        "dcnas@previous": {"strategy": "dcnas", "set": {"space": {"connectivity": "previous"}}},
    }


STUDIES: dict[str, Study] = {
    "dcnas-table5": Study(
        "dcnas-table5",
        "the five strategies of the DCNAS paper's Table 5 in DCSS at L = 8, 10, 12, 14",
        _table5,
        {"cpu": [*_CPU_COMMON, "space.layers=14"], "gpu": [*_GPU_COMMON, "space.layers=14"]},
        {"cpu": "1", "gpu": "3"},
        {"cpu": "random:3", "gpu": "random:8"},
        {
            "cpu": "measured: 20 searches of 4 steps (3-24 s each, growing with L) and 23 trainings of 8 steps in 2 min 20 s on 2 CPU cores (OMP_NUM_THREADS=1, --jobs 2)",
            "gpu": "the paper's schedule: 20 searches of 160 epochs and 20 trainings of 500 epochs; days per seed on one GPU",
        },
    ),
    "dcnas-table6": Study(
        "dcnas-table6",
        "the DCNAS ablations: path sampling, channel sampling, proxyless vs low-resolution proxy, dense vs previous-layer",
        _table6,
        {"cpu": [*_CPU_COMMON, "space.layers=4"], "gpu": [*_GPU_COMMON, "space.layers=14"]},
        {"cpu": "1", "gpu": "3"},
        {"cpu": "random:3", "gpu": "random:8"},
        {
            "cpu": "measured: 5 searches and 8 trainings at L = 4, about 7 minutes on 2 CPU cores (one job)",
            "gpu": "5 searches of 160 epochs (the all-paths and all-channels ones several times slower) and 13 trainings of 500 epochs",
        },
    ),
}


def get_study(name: str, size: str) -> Study:
    """The named study; a :class:`ConfigError` naming the studies and sizes otherwise."""
    if name not in STUDIES:
        raise ConfigError(f"--study {name!r} is not a named study; choose one of {', '.join(STUDIES)}")
    if size not in SIZES:
        raise ConfigError(f"--size {size!r}: choose cpu (a small run of every entry) or gpu (the paper's settings)")
    return STUDIES[name]


def study_variants(study: Study, size: str, base_scale: float) -> dict[str, dict[str, Any]]:
    """The study's entries as plan variants, with a low-resolution proxy's ``search_scale`` turned
    into a search-only ``data.scale`` (a fraction of the base config's)."""
    out = {}
    for name, v in study.entries(size).items():
        v = dict(v)
        fraction = v.pop("search_scale", None)
        if fraction is not None:
            v["search_set"] = {"data": {"scale": base_scale * fraction}}
        v.setdefault("select", None)
        out[name] = v
    return out
