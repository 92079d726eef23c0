"""CLI sub-commands, one module per family; each exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse
import os

from rich.console import Console


#: The width of the commands' output when it is not a terminal (a log file, a pipe, a job's log):
#: wide enough that no table is squeezed, and lines are never cut in the middle of a field.
LOG_WIDTH = 240


def rank_console() -> Console:
    """The commands' console: silent on every process but rank 0 of a torchrun launch (which sets
    RANK), so N processes print one set of messages. Without a terminal rich would wrap at 80
    columns (or at COLUMNS, which launchers such as pytest-xdist set to 80 for their workers), in the
    middle of a number and its unit; there lines are soft-wrapped (never broken) and tables get
    :data:`LOG_WIDTH` columns, or COLUMNS when that is wider."""
    quiet = os.environ.get("RANK", "0") != "0"
    console = Console(quiet=quiet)
    if console.is_terminal:
        return console
    columns = os.environ.get("COLUMNS", "")
    width = max(LOG_WIDTH, int(columns)) if columns.isdigit() else LOG_WIDTH
    return Console(quiet=quiet, width=width, soft_wrap=True)


def add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        nargs="+",
        action="extend",
        default=[],
        help="override config keys, e.g. --set space.layers=6 data.crop=[96,128] (values parsed as YAML)",
    )


def add_config_args(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        parser.add_argument("config", nargs="?", default=None, help="YAML config (optional: every key has a default)")
    else:
        parser.add_argument("--config", default=None, help="YAML config (optional: every key has a default)")
    add_set_option(parser)
