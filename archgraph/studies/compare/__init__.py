"""``archgraph compare``: strategies head to head, against hand-designed and random baselines.

For every strategy and seed the comparison searches (:func:`archgraph.engine.search.run_search` with the
config, ``strategy.name`` and ``seed`` set) and then trains the derived architecture stand-alone with
the config's ``train`` section; every baseline (the presets of the config's space, e.g. DCSS's four in
:mod:`archgraph.spaces.dcss_presets`, and architectures drawn uniformly from the space) is trained the
same way. One recipe and one data setting for everything is what makes the T-mIoU column comparable.

All stand-alone training goes through the run cache (:mod:`archgraph.studies.runcache`): an architecture
trained with the same recipe and seed is trained once, whichever entry (or earlier compare, or
``archgraph correlate``) asked for it first.

Folder ``DIR`` (``--out``)::

    compare.json                        the plan: base config, strategies, seeds, baselines
    runs/<entry>/seed<k>/search/        a search run folder (final.json when finished)
    runs/<entry>/seed<k>/search_cost.json   wall time and peak memory of the search sessions
    runs/<entry>/seed<k>/metrics.json   the stand-alone result (a copy of the cache entry's)
    runs/<entry>/seed<k>/arch.yaml      the trained architecture (presets, random baselines)
    results.json results.md             per entry: S-mIoU, T-mIoU (mean, std, 95% interval), what the searches spent, size;
                                        tests against random (Holm-corrected), strategy pairs, degenerate flags
    checklist.md                        the best-practice checklist (seeds, budgets, baselines, split, hardware, code)
    tmiou.{png,svg} tmiou_vs_cost.{png,svg}   the plots
    topologies/<entry>[-k].svg          every distinct architecture of each entry, on the supernet's full grid
    report.html                         one self-contained page tying it together

**Resume.** Running the same command again skips every finished run (a search with final.json, a
training with metrics.json), resumes an unfinished search from its checkpoint
(``run_search(resume=True)``) and an unfinished training from its last epoch (the cache). The base
config must be the same; strategies, seeds and baselines may be added, never dropped (refused, with the
saved plan's flags). Every strategy's budget is checked before the first run (:mod:`~archgraph.studies.compare.preflight`).
Named studies (``--study dcnas-table5``): :mod:`~archgraph.studies.compare.studies`; statistics:
:mod:`~archgraph.studies.compare.stats`; the checklist: :mod:`~archgraph.studies.compare.checklist`.

The modules, in the order a comparison uses them:

- :mod:`~archgraph.studies.compare.plan`: the plan, its parsing from the command line, the runs
- :mod:`~archgraph.studies.compare.baselines`: preset and random architectures, the FLOPs band
- :mod:`~archgraph.studies.compare.execute`: running the plan (search, training, measured cost, live table)
- :mod:`~archgraph.studies.compare.results`: results.json, the table, results.md
- :mod:`~archgraph.studies.compare.report`: plots, topologies, report.html
"""

from __future__ import annotations

from archgraph.studies.compare.baselines import architecture_flops, baseline_arch, random_architectures, reference_flops
from archgraph.studies.compare.execute import LiveTable, run_compare, search_run, train_architecture
from archgraph.studies.compare.plan import (
    DEFAULT_STRATEGIES,
    FORMAT,
    PLAN,
    Baseline,
    Plan,
    Run,
    check_plan,
    parse_baselines,
    parse_seeds,
    parse_strategies,
    parse_selectors,
    parse_strategy_options,
    plan_runs,
    run_config,
)
from archgraph.studies.compare.stats import holm, interval, study_statistics
from archgraph.studies.compare.studies import STUDIES, get_study
from archgraph.studies.compare.report import report_html, write_outputs, write_plots, write_topologies
from archgraph.studies.compare.results import TABLE_HEAD, collect_results, results_markdown, table_rows

__all__ = [
    "DEFAULT_STRATEGIES",
    "FORMAT",
    "PLAN",
    "TABLE_HEAD",
    "Baseline",
    "LiveTable",
    "Plan",
    "Run",
    "architecture_flops",
    "baseline_arch",
    "check_plan",
    "collect_results",
    "parse_baselines",
    "parse_seeds",
    "parse_strategies",
    "parse_selectors",
    "parse_strategy_options",
    "plan_runs",
    "STUDIES",
    "get_study",
    "holm",
    "interval",
    "study_statistics",
    "random_architectures",
    "reference_flops",
    "report_html",
    "results_markdown",
    "run_compare",
    "run_config",
    "search_run",
    "table_rows",
    "train_architecture",
    "write_outputs",
    "write_plots",
    "write_topologies",
]
