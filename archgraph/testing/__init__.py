"""Checks any strategy must pass on any space (``archgraph check-strategy``); see :mod:`archgraph.testing.checks`."""

from archgraph.testing.checks import (
    CHECKS, PLANTED_EPOCHS, PLANTED_INPUT, PLANTED_OP, PLANTED_OPS, PLANTED_STEPS, CheckReport, CheckResult, PlantedSetup, Searched, build_planted, check_strategy,
    cut_arch_gradients, hits, margin, outcome, planted_batch, planted_graph, planted_margins, planted_setup, run_planted, subnet_accuracy, tiny_space_params,
)

__all__ = [
    "CHECKS", "CheckReport", "CheckResult", "PlantedSetup", "Searched", "build_planted", "check_strategy", "cut_arch_gradients", "hits",
    "margin", "outcome", "planted_batch", "planted_graph", "planted_setup", "run_planted", "subnet_accuracy",
    "PLANTED_EPOCHS", "PLANTED_INPUT", "PLANTED_OP", "PLANTED_OPS", "PLANTED_STEPS", "planted_margins", "tiny_space_params",
]
