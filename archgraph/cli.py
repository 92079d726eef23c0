"""The ``archgraph`` command. Each sub-command lives in a module of :mod:`archgraph.commands` that
exposes ``register(subparsers)``; this file only wires them up and turns user errors into one line."""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from archgraph import __version__
from archgraph.errors import ArchgraphError

COMMAND_MODULES = ("archgraph.commands.core", "archgraph.commands.search", "archgraph.commands.train", "archgraph.commands.correlate", "archgraph.commands.compare")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archgraph",
        description="Graph-based neural architecture search for semantic segmentation (DCNAS and friends).",
        epilog="Run `archgraph COMMAND --help` for the options of a command. Docs: docs/ in the repository.",
    )
    parser.add_argument("--version", action="version", version=f"archgraph {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except ArchgraphError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished epochs are saved, resume with --resume", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
