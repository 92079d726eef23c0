"""The study itself: candidates, their two scores, the statistics, in named phases.

:func:`run_study` takes a loaded supernet (:mod:`~archgraph.studies.correlate.supernet`) through
the phases: pre-score a random pool cheaply and pick candidates spread over its range
(:mod:`~archgraph.studies.correlate.candidates`), score each candidate with the supernet's shared
weights, train each stand-alone through the run cache (:mod:`archgraph.studies.runcache`), compute
the statistics (:mod:`~archgraph.studies.correlate.stats`), and write the outputs
(:mod:`~archgraph.studies.correlate.report`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from archgraph.config import Config
from archgraph.core.graph import save
from archgraph.errors import ConfigError
from archgraph.studies.correlate.candidates import Candidate, derived_candidate, sample_pool, spread_pick
from archgraph.studies.correlate.report import RESULT_VERSION, write_outputs
from archgraph.studies.correlate.stats import correlation_stats, scorer_stats
from archgraph.studies.correlate.supernet import SearchedSupernet

Log = Callable[[str], None]


@dataclass
class StudyOptions:
    """The settings of one study (``archgraph correlate``'s options)."""

    archs: int = 8  # N: architectures in the study, the derived one included
    pool: int = 0  # random architectures pre-scored (0: max(4 N, 16))
    quick_batches: int = 1  # BN-recalibration batches of the cheap pre-score
    quick_val: int = 8  # validation images of the cheap pre-score (0: all)
    sample_seed: int = 0
    train_seed: int | None = None  # stand-alone training seed (None: the config's seed)
    resamples: int = 1000
    level: float = 0.95
    bootstrap_seed: int = 0
    scorers: tuple[str, ...] = ()  # scorers correlated besides the supernet (() = every registered one but train)

    def scorer_specs(self) -> list[str]:
        """The scorers of the study: the supernet first, then ``scorers`` (or every registered one but
        ``train``, the ground truth itself)."""
        from archgraph.engine.scoring import scorer_names

        rest = list(self.scorers) if self.scorers else [n for n in scorer_names() if n != "train"]
        return ["supernet"] + [s for s in rest if s != "supernet"]

    def check(self) -> None:
        if self.archs < 3:
            raise ConfigError(f"--archs {self.archs}: a correlation needs at least 3 architectures (the paper's figure uses dozens)")
        if self.pool and self.pool < self.archs - 1:
            raise ConfigError(f"--pool {self.pool} is smaller than --archs - 1 = {self.archs - 1}; raise --pool or leave it at 0 (automatic)")
        if self.quick_batches < 0 or self.quick_val < 0:
            raise ConfigError("--quick-batches and --quick-val must be >= 0")
        from archgraph.engine.scoring import parse_scorers

        if "train" in self.scorers:
            raise ConfigError("--scorers train: stand-alone training is the study's ground truth, not a scorer to correlate with it; drop it")
        parse_scorers(self.scorer_specs())  # unknown or repeated names, before any work


def run_study(sup: SearchedSupernet, train_cfg: Config, out: Path, opts: StudyOptions, cache_dir: Path, log: Log = print, progress: bool = False) -> dict[str, Any]:
    """Candidates, both scores, statistics; write DIR/correlation.{json,md,png,svg} and DIR/archs/.

    All in this process; :mod:`~archgraph.studies.correlate.jobs` runs the same phases as jobs."""
    scored = score_candidates(sup, train_cfg, out, opts, cache_dir, log)
    t0 = time.perf_counter()
    cands = scored["cands"]
    _train_standalone(cands, train_cfg, scored["seed"], cache_dir, log, progress)
    return finish_study(scored, [c.standalone for c in cands], train_cfg, out, opts, cache_dir, time.perf_counter() - t0)


def score_candidates(sup: SearchedSupernet, train_cfg: Config, out: Path, opts: StudyOptions, cache_dir: Path, log: Log = print) -> dict[str, Any]:
    """The supernet's phases: pre-score the pool, pick the candidates, score them, save them to
    DIR/archs/. Returns what the stand-alone phase and :func:`finish_study` need (plain data)."""
    opts.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    laps = _Laps()
    derived = derived_candidate(sup)
    pool = _pre_scored_pool(sup, opts, {derived.hash}, log)
    laps.lap("pre_score")
    cands = [derived] + [pool[i] for i in spread_pick([c.quick for c in pool], opts.archs - 1)]
    _score_in_supernet(sup, cands, log)
    laps.lap("supernet_score")
    scorer_info = _score_with_others(sup, cands, opts, log)
    laps.lap("other_scorers")
    for c in cands:
        save(c.graph, out / "archs" / f"{c.hash}.yaml")
    seed = sup.cfg.seed if opts.train_seed is None else opts.train_seed
    return {
        "cands": cands,
        "seed": seed,
        "laps": laps.times,
        "scorer_info": scorer_info,
        "head": {"version": RESULT_VERSION, "strategy": sup.cfg.strategy_name, "space": sup.cfg.space, "search_dir": str(sup.run_dir.resolve())},
        "settings": _settings(sup, train_cfg, seed, cache_dir, pool, opts),
    }


def finish_study(scored: dict[str, Any], standalone: list[dict[str, Any]], train_cfg: Config, out: Path, opts: StudyOptions, cache_dir: Path, standalone_seconds: float) -> dict[str, Any]:
    """The statistics over the candidates' two scores; writes the outputs and returns correlation.json's dict."""
    cands, seed = scored["cands"], scored["seed"]
    for c, metrics in zip(cands, standalone):
        c.standalone = metrics
    xs = [float(c.supernet) for c in cands]
    ys = [float(c.standalone["miou"]) for c in cands]
    seconds = {**scored["laps"], "standalone": standalone_seconds}
    seconds["total"] = sum(seconds.values())
    result: dict[str, Any] = {
        **scored["head"],
        **correlation_stats(xs, ys, opts.resamples, opts.level, opts.bootstrap_seed),
        "scorers": _scorer_block(cands, ys, scored.get("scorer_info", []), scored["laps"].get("supernet_score"), opts),
        **scored["settings"],
        "archs": [_arch_record(c, train_cfg, seed, cache_dir) for c in cands],
        "seconds": seconds,
    }
    write_outputs(Path(out), result)
    return result


# --------------------------------------------------------------------------------------------------
# the phases


class _Laps:
    """Wall time of consecutive phases."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.times: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.times[phase], self.last = now - self.last, now


def _pre_scored_pool(sup: SearchedSupernet, opts: StudyOptions, exclude: set[str], log: Log) -> list[Candidate]:
    """The random pool (none of ``exclude``), each member with its cheap supernet score ``quick``."""
    size = opts.pool or max(4 * opts.archs, 16)
    pool = sample_pool(sup, size, opts.sample_seed, exclude)
    if len(pool) < opts.archs - 1:
        raise ConfigError(f"the space of {sup.run_dir} has only {len(pool) + 1} distinct architectures within {4 * size} draws; lower --archs to {len(pool) + 1} or use a larger space")
    log(f"pre-scoring {len(pool)} random architectures ({opts.quick_batches} BN batch, {opts.quick_val or 'all'} val images)")
    for c in pool:
        c.quick = sup.score(c.op_idx, c.input_idx, recalib_batches=opts.quick_batches, val_images=opts.quick_val)
    return pool


def _score_in_supernet(sup: SearchedSupernet, cands: list[Candidate], log: Log) -> None:
    """Each candidate's ``supernet`` score: val mIoU with the shared weights, BN recalibrated."""
    log(f"scoring {len(cands)} architectures with the supernet's weights (BN recalibrated on {sup.cfg.search.bn_recalib_batches} batch(es))")
    for c in cands:
        c.supernet = sup.score(c.op_idx, c.input_idx)


def _score_with_others(sup: SearchedSupernet, cands: list[Candidate], opts: StudyOptions, log: Log) -> list[dict[str, Any]]:
    """Each candidate's ``scores``: every scorer of the study but the supernet (already scored).
    Returns each scorer's name, direction and wall time."""
    from archgraph.engine.scoring import parse_scorers
    from archgraph.studies.correlate.scores import run_scorers, scoring_context

    others = [s for s in opts.scorer_specs() if s != "supernet"]
    if not others:
        return []
    results = run_scorers(scoring_context(sup), [(c.op_idx, c.input_idx) for c in cands], parse_scorers(others), log)
    for i, c in enumerate(cands):
        c.scores = {r.name: r.values[i] for r in results}
    return [{"name": r.name, "higher_is_better": r.higher_is_better, "seconds": r.seconds} for r in results]


def _train_standalone(cands: list[Candidate], train_cfg: Config, seed: int, cache_dir: Path, log: Log, progress: bool) -> None:
    """Each candidate's ``standalone`` metrics (trained, resumed or cached)."""
    for i, c in enumerate(cands):
        c.standalone = train_candidate(cands, i, train_cfg, seed, cache_dir, log, progress)


def train_candidate(cands: list[Candidate], i: int, train_cfg: Config, seed: int, cache_dir: Path, log: Log = print, progress: bool = False) -> dict[str, Any]:
    """Candidate ``i``'s stand-alone metrics through the run cache (one job of the study)."""
    from archgraph.studies.runcache import trained_metrics

    c = cands[i]
    log(f"stand-alone {i + 1}/{len(cands)}: {c.hash} ({c.source})")
    return trained_metrics(c.graph, train_cfg, seed, cache_dir, progress=progress, log=log)


def _settings(sup: SearchedSupernet, train_cfg: Config, seed: int, cache_dir: Path, pool: list[Candidate], opts: StudyOptions) -> dict[str, Any]:
    """How each score was measured: correlation.json's ``supernet_score``, ``standalone`` and ``pool``."""
    from archgraph.studies.runcache import recipe_dict, recipe_hash

    quick = [c.quick for c in pool]
    return {
        "supernet_score": {
            "what": "mIoU on the selection split in the supernet's subnet mode, BN recalibrated on trainA",
            "select_split": getattr(sup.cfg.search, "select_split", "val"),
            "bn_recalib_batches": sup.cfg.search.bn_recalib_batches,
            "images": len(getattr(sup.data, "select", sup.data.val)),
        },
        "scorer_list": opts.scorer_specs(),
        "standalone": {"recipe_hash": recipe_hash(train_cfg), "recipe": recipe_dict(train_cfg), "seed": seed, "cache_dir": str(Path(cache_dir).resolve())},
        "pool": {"size": len(pool), "sample_seed": opts.sample_seed, "quick_batches": opts.quick_batches, "quick_val": opts.quick_val, "quick_range": [min(quick), max(quick)]},
    }


def _scorer_block(cands: list[Candidate], truth: list[float], info: list[dict[str, Any]], supernet_seconds: float | None, opts: StudyOptions) -> dict[str, Any]:
    """correlation.json's ``scorers``: for the supernet and every other scorer, Pearson, Spearman,
    Kendall and top-20% Kendall against the stand-alone mIoU, each with its bootstrap interval."""
    rows = [{"name": "supernet", "higher_is_better": True, "seconds": supernet_seconds, "values": [float(c.supernet) for c in cands]}]
    rows += [{**i, "values": [float(c.scores[i["name"]]) for c in cands]} for i in info]
    return {r["name"]: {**scorer_stats(r["values"], truth, r["higher_is_better"], opts.resamples, opts.level, opts.bootstrap_seed), "seconds": r["seconds"]} for r in rows}


def _arch_record(c: Candidate, train_cfg: Config, seed: int, cache_dir: Path) -> dict[str, Any]:
    """One architecture of correlation.json's ``archs``."""
    from archgraph.studies.runcache import cache_key, entry_dir

    return {
        "arch_hash": c.hash,
        "source": c.source,
        "sample_seed": c.sample_seed,
        "quick_score": c.quick,
        "supernet_miou": c.supernet,
        "standalone_miou": c.standalone["miou"],
        "scores": {k: (v if math.isfinite(v) else None) for k, v in c.scores.items()},
        "standalone_pixel_acc": c.standalone.get("pixel_acc"),
        "params": c.standalone.get("params"),
        "flops": c.standalone.get("flops"),
        "file": f"archs/{c.hash}.yaml",
        "cache_entry": str(entry_dir(cache_dir, cache_key(c.graph, train_cfg, seed)).resolve()),
    }
