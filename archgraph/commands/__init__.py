"""CLI sub-commands, one module per family; each exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse
import os

from rich.console import Console


def rank_console() -> Console:
    """The commands' console: silent on every process but rank 0 of a torchrun launch (which sets
    RANK), so N processes print one set of messages."""
    return Console(quiet=os.environ.get("RANK", "0") != "0")


def add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", dest="overrides", metavar="KEY=VALUE", nargs="+", action="extend", default=[],
        help="override config keys, e.g. --set space.layers=6 data.crop=[96,128] (values parsed as YAML)",
    )


def add_config_args(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        parser.add_argument("config", nargs="?", default=None, help="YAML config (optional: every key has a default)")
    else:
        parser.add_argument("--config", default=None, help="YAML config (optional: every key has a default)")
    add_set_option(parser)
