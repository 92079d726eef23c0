"""Checks any strategy must pass on any space, runnable by a plug-in author in about a minute.

``archgraph check-strategy NAME --space NAME`` (or :func:`check_strategy` from Python) runs a
registered strategy on tiny sizes and prints one line per check, ``PASS``, ``FAIL`` or ``SKIP``
with the reason; the command exits 1 when a check fails. The checks, and the part of the strategy
contract (docs/plugins.md) each one holds the strategy to:

- ``subnet``: subnet mode (``relaxation.fixed_subnet``, what S-mIoU and SPOS's evolution evaluate)
  computes the derived network: the same logits to 1e-5 as the stand-alone network built from the
  decoded graph with the supernet's weights, in evaluation and in training mode (BN recalibration
  runs in training mode), for the strategy's own architecture and a random one. Only the chosen
  candidates run, alpha/beta and the other candidates' weights make no difference, and nothing is
  drawn. A strategy whose ops are narrower than the node (partial channels) cannot be compared
  with the full-width derived network; it gets every other part of the check.
- ``gradients``: architecture steps happen as :meth:`Strategy.planned_arch_steps` promises, and
  their gradients are finite and reach alpha and beta on candidates that ran in that step (a
  strategy without architecture optimiser is skipped). Their *size* is compared with the reference
  strategy's (:data:`~archgraph.testing.checks.GRADIENT_REFERENCE`, the continuous relaxation) on the same graph and batches:
  when more than half of the choices whose candidates ran get gradients over
  :data:`~archgraph.testing.checks.GRADIENT_RATIO` times smaller, the check fails (a hard straight-through gate whose path is
  the only input of the next BatchNorm: BN cancels the gate's scale; :mod:`archgraph.core.straight_through`).
- ``evaluation``: where the strategy claims it (``checks = CheckSettings(eval_is_derived=True)``), evaluation mode outside
  subnet mode computes the derived network, deterministically.
- ``resume``: a short search (:func:`archgraph.engine.search.run_search`, a checkpoint after every
  step) killed mid-epoch and resumed ends bit-identical to an uninterrupted one: arch.yaml,
  scores.json, every tensor of the supernet and the strategy's state (its sampler's generator
  belongs in ``state_dict``).
- ``planted``: on a graph whose right answer is known (:func:`planted_graph`: the label of every
  pixel is the sign of the image's first channel; only the full-resolution input and the identity op
  keep it), the strategy finds the planted op and input decisively in most seeds, through its own
  ``search_step`` and ``on_search_end``. tests/test_planted_signal.py runs the same graph over five
  seeds with negative controls.

The checks run with the strategy's defaults, its ``checks.options`` (and ``checks.planted_options``,
``checks.planted_steps`` for the planted run) and whatever ``options`` the caller adds; the space with
``layers=2, base_channels=4`` where it has such hyper-parameters, updated by ``space_params``.

One module per job, so that a reader (or a plug-in author whose strategy fails a check) finds the
check's code without the rest:

- :mod:`~archgraph.testing.checks`: :func:`check_strategy` and the in-process checks (subnet,
  gradients, evaluation, planted);
- :mod:`~archgraph.testing.harness`: the miniature search those checks read (a strategy's own steps
  on the tiny space through the search's driver, with what ran and what alpha/beta received recorded);
- :mod:`~archgraph.testing.resume`: the resume check, which runs whole searches and kills one;
- :mod:`~archgraph.testing.planted`: the planted graph, its batches and its miniature search loop
  (also tests/test_planted_signal.py's and tests/test_selection.py's);
- :mod:`~archgraph.testing.report`: :class:`CheckResult` and :class:`CheckReport`;
- :mod:`~archgraph.testing.settings`: how the checks run a strategy (its ``checks``, a
  :class:`~archgraph.core.strategy_checks.CheckSettings`).

Everything a caller needs is importable from here, as it was from the single module this package
replaced.
"""

from archgraph.testing.checks import ATOL, CHECKS, GRADIENT_RATIO, GRADIENT_REFERENCE, GRADIENT_VANISHED_SHARE, check_strategy
from archgraph.testing.harness import BATCH_SIZE, CROP, EXERCISE_EPOCHS, EXERCISE_STEPS, TINY_SPACE, node_module, tiny_space_params
from archgraph.testing.planted import (
    CHANNELS,
    FITNESS_MARGIN,
    MARGIN,
    PLANTED_BATCH,
    PLANTED_EPOCHS,
    PLANTED_HW,
    PLANTED_INPUT,
    PLANTED_OP,
    PLANTED_OPS,
    PLANTED_STEPS,
    SOURCES,
    PlantedSetup,
    Searched,
    build_planted,
    cut_arch_gradients,
    hits,
    margin,
    outcome,
    planted_batch,
    planted_graph,
    planted_margins,
    planted_setup,
    run_planted,
    subnet_accuracy,
)
from archgraph.testing.report import CheckReport, CheckResult
from archgraph.testing.resume import RESUME_BUDGETS, RESUME_RUN
from archgraph.testing.settings import check_settings

# Every public name of the single module archgraph/testing.py was, so that each import of it keeps working.
__all__ = [
    "CHECKS",
    "CheckReport",
    "CheckResult",
    "PlantedSetup",
    "Searched",
    "build_planted",
    "check_strategy",
    "cut_arch_gradients",
    "hits",
    "margin",
    "outcome",
    "planted_batch",
    "planted_graph",
    "planted_setup",
    "run_planted",
    "subnet_accuracy",
    # constants and helpers
    "ATOL",
    "BATCH_SIZE",
    "CHANNELS",
    "CROP",
    "EXERCISE_EPOCHS",
    "EXERCISE_STEPS",
    "FITNESS_MARGIN",
    "GRADIENT_RATIO",
    "GRADIENT_REFERENCE",
    "GRADIENT_VANISHED_SHARE",
    "MARGIN",
    "PLANTED_BATCH",
    "PLANTED_EPOCHS",
    "PLANTED_HW",
    "PLANTED_INPUT",
    "PLANTED_OP",
    "PLANTED_OPS",
    "PLANTED_STEPS",
    "RESUME_BUDGETS",
    "RESUME_RUN",
    "SOURCES",
    "TINY_SPACE",
    "check_settings",
    "node_module",
    "planted_margins",
    "tiny_space_params",
]
