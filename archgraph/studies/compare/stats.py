"""The statistics of a comparison: intervals, tests against random, corrections, degenerate results.

Why these: with 3 seeds and 5 strategies, a mean ± sd table invites reading noise as ranking. A
reviewer (Lindauer & Hutter's checklist; Yu et al. 2020) asks for an interval per entry, a test of
each strategy against the random architectures of the same space and recipe, a correction for
testing several strategies at once, and an effect size on a scale that means something here (the
spread of random architectures). Everything is computed from the finished runs' T-mIoU:

- :func:`interval`: mean, sample sd and a 95 % Student-t interval of the mean (``None`` for n < 2).
- :func:`welch`: Welch's unequal-variance t-test (``scipy.stats.ttest_ind(equal_var=False)``).
- :func:`permutation_p`: the exact two-sided permutation test of the difference of means over every
  split of the pooled values; used in place of Welch's when either side has fewer than
  :data:`SMALL_N` runs (Welch's t is unreliable there and undefined for one run).
- :func:`holm`: Holm's step-down adjustment of a family of p-values (strongly controls the
  family-wise error rate, without the independence Sidak's needs).
- :func:`percentile_among`: where a mean falls among the random architectures (mid-rank: ties
  count half).
- :func:`degenerate_flags`: zero spread, every run predicting one class (the majority-class mIoU:
  only one class with IoU > 0 in its ``per_class_iou``), entries tied with another entry, and
  searches whose final.json carries the "cannot be told from the initialisation" warning.

:func:`study_statistics` assembles the block results.json holds under ``"statistics"``.
Nothing here reports a best-of-N: every number is a mean over runs or a test on all of them.
"""

from __future__ import annotations

import itertools
import math
import statistics
import warnings
from math import comb
from typing import Any, Sequence

SMALL_N = 5  # fewer runs than this on either side: the exact permutation test instead of Welch's
MAX_PERMUTATION_SPLITS = 200_000  # beyond this the exact test is too slow; Welch's is used
TIE = 1e-9  # two T-mIoU means closer than this are a tie (identical scores, not measurement)
LEVEL = 0.95


def interval(values: Sequence[float], level: float = LEVEL) -> dict[str, Any]:
    """``n``, ``mean``, ``sd`` (sample, n - 1) and the Student-t interval ``ci`` of the mean;
    ``sd`` and ``ci`` are ``None`` for fewer than two values (no spread can be estimated)."""
    from scipy.stats import t

    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "ci": None}
    mean = statistics.fmean(xs)
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "ci": None}
    sd = statistics.stdev(xs)
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "ci": [mean - half, mean + half]}


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None]:
    """Welch's t statistic and two-sided p-value of mean(a) - mean(b); ``(None, None)`` when a side
    has fewer than two values or both have zero spread (the test is undefined)."""
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2 or (statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0):
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ttest_ind(list(a), list(b), equal_var=False)
    t, p = float(res.statistic), float(res.pvalue)
    return (t, p) if math.isfinite(p) else (None, None)


def permutation_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Exact two-sided permutation p-value of |mean(a) - mean(b)| over every way to split the pooled
    values into groups of len(a) and len(b); ``None`` when a side is empty or the splits are too many."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    if not a or not b or comb(len(a) + len(b), len(a)) > MAX_PERMUTATION_SPLITS:
        return None
    pooled = a + b
    total, k = sum(pooled), len(a)
    observed = abs(sum(a) / k - sum(b) / len(b))
    hits = splits = 0
    for idx in itertools.combinations(range(len(pooled)), k):
        s = sum(pooled[i] for i in idx)
        diff = abs(s / k - (total - s) / len(b))
        hits += diff >= observed - 1e-12
        splits += 1
    return hits / splits


def compare_groups(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Difference of means a - b with the test that suits the sizes: ``test`` is ``"welch"`` or
    ``"permutation"`` (exact; when either side has fewer than :data:`SMALL_N` runs, or when Welch's
    is undefined because neither side varies: the exact test still is, and leaving the comparison
    out would shrink the Holm family), ``p`` its two-sided p-value (``None`` when no test is defined)."""
    diff = statistics.fmean(a) - statistics.fmean(b) if a and b else None
    t, p_welch = welch(a, b)
    small = min(len(a), len(b)) < SMALL_N or p_welch is None
    p_perm = permutation_p(a, b) if small else None
    if small and p_perm is not None:
        test, p = "permutation", p_perm
    else:
        test, p = ("welch", p_welch) if p_welch is not None else (None, None)
    return {"diff": diff, "test": test, "p": p, "welch_t": t, "welch_p": p_welch, "permutation_p": p_perm}


def smallest_p(n_a: int, n_b: int) -> float:
    """The smallest p-value :func:`compare_groups` can return for groups of these sizes: the exact
    test's one most extreme ordering of C(n_a + n_b, n_a), or two (the mirror ordering) for equal
    sizes; 0 where Welch's test is used, whose p has no floor."""
    if n_a < 1 or n_b < 1:
        return 1.0
    if min(n_a, n_b) >= SMALL_N:
        return 0.0
    return min(1.0, (2 if n_a == n_b else 1) / comb(n_a + n_b, n_a))


def significance_floor_note(seeds: int, randoms: int, entries: int, alpha: float = 0.05) -> str | None:
    """A warning when no strategy entry of a study can differ from the random architectures at
    ``alpha``: even its most extreme result, after Holm's correction over ``entries``, stays above
    it. None when the plan can reach ``alpha``. Said before a study runs, not after its hours."""
    if seeds < 1 or randoms < 1 or entries < 1:
        return None
    floor = smallest_p(seeds, randoms) * entries
    if floor < alpha:
        return None
    enough = next((m for m in range(randoms + 1, 200) if smallest_p(seeds, m) * entries < alpha), None)
    fix = f"random:{enough}" if enough else "more random architectures"
    return (
        f"warning: with {seeds} seed(s) against {randoms} random architecture(s) the exact test's smallest p is {smallest_p(seeds, randoms):.3g}"
        + (f" ({floor:.3g} after Holm over {entries} entries)" if entries > 1 else "")
        + f", so no entry can differ from random at p < {alpha:g}; use --baselines {fix} or more --seeds (docs/comparing.md)"
    )


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values, in the input order; ``None`` entries are left out of the
    family (no test) and stay ``None``."""
    present = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(present)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def percentile_among(value: float, population: Sequence[float]) -> float | None:
    """Percent of ``population`` below ``value``, ties counting half (0..100); ``None`` if empty."""
    if not population:
        return None
    below = sum(x < value - TIE for x in population)
    ties = sum(abs(x - value) <= TIE for x in population)
    return 100.0 * (below + 0.5 * ties) / len(population)


def single_class(per_class_iou: dict[str, float | None] | None) -> bool:
    """The run predicted one class everywhere: only one class has IoU > 0 (that IoU is the class's
    pixel frequency, so its mIoU is the majority-class score when that class is the majority)."""
    if not per_class_iou:
        return False
    present = [v for v in per_class_iou.values() if v is not None]
    return len(present) > 1 and sum(v > 0 for v in present) == 1


def degenerate_flags(entries: list[dict[str, Any]], values: dict[str, list[float]]) -> dict[str, list[str]]:
    """Per entry name, the reasons its result cannot be read as a measurement (empty: none)."""
    flags: dict[str, list[str]] = {e["name"]: [] for e in entries}
    means = {n: statistics.fmean(v) for n, v in values.items() if v}
    for e in entries:
        name, runs = e["name"], [r for r in e["runs"] if r.get("status") == "done"]
        xs = values.get(name, [])
        if len(xs) >= 2 and max(xs) - min(xs) <= TIE:
            flags[name].append(f"zero spread: all {len(xs)} runs scored {xs[0]:.4f}")
        single = [r for r in runs if r.get("single_class")]
        if runs and len(single) == len(runs):
            score = f" (mIoU {statistics.fmean(xs):.4f})" if xs else ""
            flags[name].append(f"majority-class result: every run predicts one class only{score}")
        elif single:
            flags[name].append(f"{len(single)} of {len(runs)} runs predict one class only (the majority-class mIoU)")
        warned = [r for r in runs if r.get("search_warning")]
        if warned:
            flags[name].append(f"{len(warned)} of {len(runs)} searches ended with an architecture that cannot be told from the initialisation (final.json warning)")
        if name in means:
            tied = [o for o, m in means.items() if o != name and abs(m - means[name]) <= TIE]
            if tied:
                flags[name].append(f"tied with {', '.join(tied)} (mean {means[name]:.4f})")
    return flags


def study_statistics(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """results.json's ``"statistics"``: per entry its interval and (strategies) its comparison with
    the random entry, Holm-corrected across the study's strategies; every pair of strategies
    (Holm-corrected across the pairs); the degenerate flags."""
    values = {e["name"]: [float(r["t_miou"]) for r in e["runs"] if r.get("status") == "done" and r.get("t_miou") is not None] for e in entries}
    random = next((e["name"] for e in entries if e["kind"] == "random"), None)
    rand = values.get(random, []) if random else []
    strategies = [e["name"] for e in entries if e["kind"] == "strategy"]
    space = {e["name"]: e.get("space") for e in entries}
    per_entry: dict[str, dict[str, Any]] = {n: interval(v) for n, v in values.items()}
    tests = {}
    for name in strategies:
        xs = values[name]
        if not xs or not rand:
            continue
        if space[name] != space[random]:  # another depth or connectivity: random architectures of another space
            per_entry[name]["vs_random"] = {"skipped": "searched another space than the random architectures were drawn from"}
            continue
        test = compare_groups(xs, rand)
        sd_r = statistics.stdev(rand) if len(rand) > 1 else 0.0
        test["effect_random_sd"] = (test["diff"] / sd_r) if sd_r > 0 else None
        test["percentile_among_random"] = percentile_among(statistics.fmean(xs), rand)
        tests[name] = test
    for name, p in zip(tests, holm([t["p"] for t in tests.values()])):
        tests[name]["p_holm"] = p
    for name, test in tests.items():
        per_entry[name]["vs_random"] = test
    pairs = []
    for a, b in itertools.combinations([s for s in strategies if values[s]], 2):
        pairs.append({"a": a, "b": b, **compare_groups(values[a], values[b])})
    for pair, p in zip(pairs, holm([p["p"] for p in pairs])):
        pair["p_holm"] = p
    return {
        "level": LEVEL,
        "random_entry": random,
        "entries": per_entry,
        "pairs": pairs,
        "flags": degenerate_flags(entries, values),
        "method": (
            f"95% Student-t interval of the mean; strategy vs random: exact permutation test of the difference of "
            f"means when either side has fewer than {SMALL_N} runs, else Welch's t-test; p-values Holm-corrected "
            "across the strategies of the study (and, separately, across the strategy pairs); effect = "
            "difference of means in random architectures' standard deviations; percentile = mid-rank "
            "percentile of the entry's mean among the random architectures' T-mIoU"
        ),
    }
