"""The statistics of the study: Pearson's rho, Kendall's tau-b, p-values, bootstrap intervals.

``scipy.stats.pearsonr`` and ``kendalltau`` (tau-b, which handles ties) on paired scores, NaN where a
side is constant (no ranking information); percentile bootstrap confidence intervals over resampled
pairs, seeded. :func:`correlation_stats` gives the block correlation.json holds.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from archgraph.errors import ConfigError


def _finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ConfigError(f"expected a flat list of scores, got shape {arr.shape}")
    return arr


def _rank_statistic(test, x: Sequence[float], y: Sequence[float]) -> float:
    """``test(a, b)[0]``; NaN when either side is constant (no ranking information) or n < 2."""
    a, b = _finite(x), _finite(y)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(test(a, b)[0])


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's rho; NaN when either side is constant or n < 2."""
    from scipy.stats import pearsonr

    return _rank_statistic(pearsonr, x, y)


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties on either side count as in scipy); NaN when a side is constant."""
    from scipy.stats import kendalltau

    return _rank_statistic(kendalltau, x, y)


def p_values(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Two-sided p-values of both statistics (NaN where the statistic is undefined)."""
    from scipy.stats import kendalltau, pearsonr

    a, b = _finite(x), _finite(y)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"pearson": math.nan, "kendall": math.nan}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"pearson": float(pearsonr(a, b)[1]), "kendall": float(kendalltau(a, b)[1])}


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap confidence interval and how many resamples defined the statistic."""

    low: float
    high: float
    level: float
    resamples: int
    valid: int  # resamples in which the statistic was defined (not every side constant)

    def to_dict(self) -> dict[str, Any]:
        return {"low": _json_float(self.low), "high": _json_float(self.high), "level": self.level,
                "resamples": self.resamples, "valid": self.valid}


def bootstrap_ci(x: Sequence[float], y: Sequence[float], statistic: Callable[[Sequence[float], Sequence[float]], float],
                 resamples: int = 1000, level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap CI of ``statistic`` over pairs resampled with replacement.

    Pairs stay pairs (an architecture's two scores are drawn together). Resamples in which the
    statistic is undefined (e.g. the same architecture drawn n times) are dropped and counted; the
    interval is NaN when fewer than 10 remain. The same ``seed`` gives the same interval.
    """
    if resamples < 1:
        raise ConfigError(f"bootstrap resamples must be >= 1, got {resamples}")
    if not 0 < level < 1:
        raise ConfigError(f"the confidence level must be in (0, 1), e.g. 0.95; got {level}")
    a, b = _finite(x), _finite(y)
    if len(a) != len(b):
        raise ConfigError(f"paired scores differ in length: {len(a)} vs {len(b)}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, len(a), len(a))
        v = statistic(a[idx], b[idx])
        if math.isfinite(v):
            values.append(v)
    if len(values) < 10:
        return Interval(math.nan, math.nan, level, resamples, len(values))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(low), float(high), level, resamples, len(values))


def correlation_stats(supernet: Sequence[float], standalone: Sequence[float], resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """rho and tau with p-values and bootstrap CIs, as written to correlation.json."""
    p = p_values(supernet, standalone)
    out: dict[str, Any] = {"n": len(supernet)}
    for name, fn in (("pearson", pearson), ("kendall", kendall)):
        out[name] = {
            "value": _json_float(fn(supernet, standalone)),
            "p_value": _json_float(p[name]),
            "ci": bootstrap_ci(supernet, standalone, fn, resamples, level, seed).to_dict(),
        }
    out["bootstrap"] = {"resamples": resamples, "level": level, "seed": seed, "method": "percentile, pairs resampled with replacement"}
    return out


def _json_float(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)
