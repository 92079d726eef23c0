"""CLI sub-commands, one module per family; each exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse


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
