"""The statistics of the study: Pearson's rho, Spearman's rho, Kendall's tau-b, top-20% Kendall,
the scorer's pick of K (:func:`pick_of_k`), p-values, bootstrap intervals.

``scipy.stats.pearsonr``, ``spearmanr`` and ``kendalltau`` (tau-b, which handles ties) on paired
scores, NaN where a side is constant (no ranking information); :func:`top_kendall` is Kendall's tau
over the architectures in the top 20% by the ground truth (stand-alone mIoU), the part of the ranking
a search needs right; percentile bootstrap confidence intervals over resampled pairs, seeded.
:func:`correlation_stats` gives the supernet's block of correlation.json, :func:`scorer_stats` the
block of every scorer.
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


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation; NaN when either side is constant or n < 2."""
    from scipy.stats import spearmanr

    return _rank_statistic(spearmanr, x, y)


TOP_FRACTION = 0.2  # top-k Kendall: the architectures in the top 20% by the ground truth


def top_kendall(x: Sequence[float], y: Sequence[float], fraction: float = TOP_FRACTION) -> float:
    """Kendall's tau-b over the pairs whose ground truth ``y`` is in the top ``fraction`` (at least
    ``ceil(fraction * n)`` pairs, ties at the cut all kept); NaN with fewer than 3 such pairs.

    Why: a search keeps the best architecture, so what matters is whether the scorer orders the good
    ones among themselves; a scorer that only separates good from bad scores well on plain tau."""
    a, b = _finite(x), _finite(y)
    if len(a) < 3:
        return math.nan
    k = max(1, math.ceil(fraction * len(b)))
    cut = np.sort(b)[::-1][k - 1]
    keep = b >= cut
    if keep.sum() < 3:
        return math.nan
    return kendall(a[keep], b[keep])


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
        return {"low": _json_float(self.low), "high": _json_float(self.high), "level": self.level, "resamples": self.resamples, "valid": self.valid}


def bootstrap_ci(x: Sequence[float], y: Sequence[float], statistic: Callable[[Sequence[float], Sequence[float]], float], resamples: int = 1000, level: float = 0.95, seed: int = 0) -> Interval:
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


PICK_K = (8, 24)  # candidates per pick: topk's default K is 24 (docs/selection.md)


def pick_of_k(x: Sequence[float], y: Sequence[float], k: int) -> float:
    """What choosing with the scorer gives: the expected ground truth ``y`` of the architecture the
    scorer ``x`` ranks best among ``k`` drawn uniformly without replacement from the ``n`` studied,
    in standard deviations of ``y`` above its mean (0: a random pick; the oracle, ``x = y``, is the
    most any scorer can reach). NaN when ``k > n`` or ``y`` is constant.

    Exact, not simulated: the architecture at position ``r`` (0-based) of the scorer's descending
    order is the best of the draw with probability ``C(n-1-r, k-1) / C(n, k)``; architectures the
    scorer ties share their mean ``y`` (a tie is broken at random). Why it is reported beside the rank
    statistics: a selector keeps one architecture of K, so how far its pick lands above random is
    the question a user asks; the same tau can mean much or little depending on where the errors are.
    """
    a, b = _finite(x), _finite(y)
    n = len(a)
    if k < 1 or k > n or n < 2 or np.ptp(b) == 0:
        return math.nan
    order = np.argsort(-a, kind="stable")
    a, b = a[order], b[order]
    shared = b.copy()
    start = 0
    for i in range(1, n + 1):  # runs of equal scores share their mean ground truth
        if i == n or a[i] != a[start]:
            shared[start:i] = b[start:i].mean()
            start = i
    total = math.comb(n, k)
    weights = np.array([math.comb(n - 1 - r, k - 1) / total for r in range(n)])
    return float((weights @ shared - b.mean()) / b.std(ddof=1))


STATISTICS: dict[str, Callable[[Sequence[float], Sequence[float]], float]] = {
    "pearson": pearson,
    "spearman": spearman,
    "kendall": kendall,
    "top_kendall": top_kendall,
}


def undefined_reason(name: str, scores: np.ndarray, truth: np.ndarray) -> str:
    """Why statistic ``name`` has no value on these pairs, in the words a table can print."""
    n = len(scores)
    if name == "top_kendall":
        top = max(1, math.ceil(TOP_FRACTION * n))
        if n < 3 or top < 3:
            least = next(m for m in range(3, 10_000) if math.ceil(TOP_FRACTION * m) >= 3)
            return f"the top {TOP_FRACTION:.0%} of {n} is {min(top, n)} architecture(s); it needs 3 (at least {least} architectures)"
    if n < 2:
        return f"{n} scored architecture(s)"
    return "a side is constant"


def scorer_stats(scores: Sequence[float], truth: Sequence[float], higher_is_better: bool = True, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Pearson, Spearman, Kendall and top-20% Kendall of one scorer against the ground truth, each
    with its percentile bootstrap interval (the same resampled pairs for each statistic: one seed).

    A scorer whose lower values are better is negated first, so a positive value always means "ranks
    as the ground truth does". Pairs where the scorer gave no finite value (a proxy that overflowed,
    NASWOT's -inf for two images with one code) are left out and counted (``dropped``)."""
    s, t = _finite(scores), _finite(truth)
    if len(s) != len(t):
        raise ConfigError(f"paired scores differ in length: {len(s)} vs {len(t)}")
    keep = np.isfinite(s) & np.isfinite(t)
    s, t = (s[keep] if higher_is_better else -s[keep]), t[keep]
    out: dict[str, Any] = {"n": int(keep.sum()), "dropped": int((~keep).sum()), "higher_is_better": higher_is_better}
    for name, fn in STATISTICS.items():
        value = fn(s, t) if len(s) else math.nan
        if math.isfinite(value):
            out[name] = {"value": float(value), "ci": bootstrap_ci(s, t, fn, resamples, level, seed).to_dict()}
        else:  # no interval either: resamples could be defined only where duplicated draws pad the data
            out[name] = {"value": None, "why": undefined_reason(name, s, t), "ci": Interval(math.nan, math.nan, level, resamples, 0).to_dict()}
    for k in PICK_K:
        if k > len(s):
            continue

        def fn(a, b, k=k):
            return pick_of_k(a, b, k)

        out[f"pick_of_{k}"] = {"k": k, "value": _json_float(fn(s, t)), "oracle": _json_float(fn(t, t)), "ci": bootstrap_ci(s, t, fn, resamples, level, seed).to_dict()}
    return out


def _json_float(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)
