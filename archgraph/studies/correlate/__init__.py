"""Correlation study: does the supernet rank architectures as stand-alone training does?

DCNAS (Table 1, Figure 3) measures, per method, Pearson's rho and Kendall's tau between an
architecture's performance inside the trained supernet (shared weights) and after stand-alone
training, over many architectures; a one-shot method is only as good as that ranking. This package
reproduces the measurement for any strategy of archgraph:

1. **Supernet.** A finished search folder (``archgraph search``; its ``checkpoint.pt``) is loaded
   back: the strategy is rebuilt at its last stage and the supernet gets its trained weights.
2. **Candidates.** The searched (derived) architecture, plus ``N - 1`` architectures of the
   supernet's space chosen to *spread over its quality range*: a pool of uniformly random
   architectures (:func:`archgraph.core.decode.uniform_scores`, seeds ``sample_seed + i``, so every
   strategy draws the same pool) is scored cheaply (1 BN-recalibration batch, the first few
   validation images), and the picks are the pool members nearest to ``N - 1`` evenly spaced
   targets between the lowest and the highest cheap score. Without that spread, random samples bunch
   in the middle of the range and the correlation says little about ranking good against bad.
3. **Supernet score** of each candidate: validation mIoU in the supernet's subnet mode after BN
   recalibration (:func:`archgraph.engine.search.score_subnet`, ``search.bn_recalib_batches`` batches), the
   same measurement as S-mIoU.
4. **Stand-alone score**: mIoU after short training with one fixed recipe (the config's ``train``
   section) through the run cache (:mod:`archgraph.studies.runcache`), so an architecture that another
   strategy or command already trained with the same recipe and seed is not trained again.
5. **Every other scorer** (:mod:`archgraph.engine.scoring`: zero-cost proxies, params, FLOPs) on the
   same candidates (:mod:`~archgraph.studies.correlate.scores`).
6. **Statistics**: ``scipy.stats.pearsonr`` and ``kendalltau`` (tau-b, which handles ties), with
   percentile bootstrap confidence intervals over resampled architecture pairs (seeded); for every
   scorer also Spearman and top-20% Kendall.

``DIR/correlation.json`` holds everything (per architecture: hashes, both scores, params, FLOPs,
cache entry), ``DIR/correlation.{png,svg}`` the scatter plot and ``DIR/correlation.md`` a table.
:func:`correlation_summary` gives ``archgraph compare`` the numbers for its report.

The modules, by step: :mod:`~archgraph.studies.correlate.supernet` (1),
:mod:`~archgraph.studies.correlate.candidates` (2), :mod:`~archgraph.studies.correlate.study` (all steps in
order, :func:`run_study`), :mod:`~archgraph.studies.correlate.stats` (5) and
:mod:`~archgraph.studies.correlate.report` (the files; :func:`correlation_summary`).
"""

from __future__ import annotations

from archgraph.studies.correlate.candidates import (
    Candidate,
    derived_candidate,
    indices_of,
    one_hot_scores,
    sample_pool,
    spread_pick,
)
from archgraph.studies.correlate.report import RESULT, RESULT_VERSION, correlation_summary, markdown_table, scatter_plot, write_outputs
from archgraph.studies.correlate.scores import ScorerResult, architecture_candidates, run_scorers, scoring_context
from archgraph.studies.correlate.stats import Interval, bootstrap_ci, correlation_stats, kendall, p_values, pearson, pick_of_k, scorer_stats, spearman, top_kendall
from archgraph.studies.correlate.study import StudyOptions, run_study
from archgraph.studies.correlate.supernet import InputIdx, OpIdx, SearchedSupernet, load_searched_supernet

__all__ = [
    "RESULT",
    "RESULT_VERSION",
    "Candidate",
    "InputIdx",
    "Interval",
    "OpIdx",
    "SearchedSupernet",
    "StudyOptions",
    "bootstrap_ci",
    "correlation_stats",
    "correlation_summary",
    "derived_candidate",
    "indices_of",
    "kendall",
    "load_searched_supernet",
    "markdown_table",
    "one_hot_scores",
    "p_values",
    "pearson",
    "run_study",
    "sample_pool",
    "scatter_plot",
    "spread_pick",
    "write_outputs",
    "ScorerResult",
    "architecture_candidates",
    "run_scorers",
    "pick_of_k",
    "scorer_stats",
    "scoring_context",
    "spearman",
    "top_kendall",
]
