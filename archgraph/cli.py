"""The ``archgraph`` command. Each sub-command lives in a module of :mod:`archgraph.commands` that
exposes ``register(subparsers)``; this file only wires them up and turns user errors into one line."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
import warnings
from importlib import import_module

from archgraph import __version__
from archgraph.errors import ArchgraphError, Interrupted

COMMAND_MODULES = (
    "archgraph.commands.core",
    "archgraph.commands.search",
    "archgraph.commands.train",
    "archgraph.commands.correlate",
    "archgraph.commands.compare",
    "archgraph.commands.check",
    "archgraph.commands.score",
    "archgraph.commands.select",
    "archgraph.commands.latency",
)


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


# What a command that was interrupted kept, and how to go on (the engines' own Interrupted line,
# which names the exact step and resume command, takes precedence).
_RESUME = {
    "search": "finished epochs are saved; continue with the same command and --resume",
    "train": "finished epochs are saved; continue with the same command and --resume",
    "compare": "finished runs are saved; run the same command again to continue",
    "correlate": "finished searches and trainings are saved; run the same command again to continue",
    "latency": "the modules timed so far are kept in OUT.partial.json; run the same command again to continue",
}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings in the CLI's own form, ``warning: ...`` on one line (no source path, no code line)."""
    print(f"warning: {message}", file=file or sys.stderr)


def _term_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a command as Ctrl-C does: one message, exit 130


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous_show, warnings.showwarning = warnings.showwarning, _show_warning
    previous_term = signal.signal(signal.SIGTERM, _term_as_interrupt) if threading.current_thread() is threading.main_thread() else None
    try:
        result = args.func(args)
    except ArchgraphError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM, in every command: one line, exit 130
        # A study (compare, correlate) continues by running it again, not by resuming the run it was in.
        own = isinstance(exc, Interrupted) and str(exc) and args.command not in ("compare", "correlate")
        line = str(exc) if own else f"interrupted; {_RESUME.get(args.command, 'nothing was lost but the step in progress')}"
        print(line, file=sys.stderr)
        return 130
    except OSError as exc:
        message = os_error_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = previous_show
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    return int(result or 0)


# Errors of the machine rather than of archgraph: a file or folder that cannot be written or read.
_FIXES = {
    errno.EACCES: "check its permissions, or choose a folder you can write (--out / -o)",
    errno.EPERM: "check its permissions, or choose a folder you can write (--out / -o)",
    errno.EROFS: "it is on a read-only file system; choose a folder you can write (--out / -o)",
    errno.ENOSPC: "the disk is full; free some space (an interrupted search or training continues with --resume)",
    errno.EDQUOT: "your disk quota is used up; free some space (an interrupted search or training continues with --resume)",
    errno.ENOTDIR: "a file stands where a folder is needed; choose another path",
    errno.EISDIR: "a folder stands where a file is needed; choose another path",
    errno.EEXIST: "something of that name is in the way; choose another path",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.ENOENT: "check the path (a folder on it may have been removed, or be one nothing can be created in)",
}


def os_error_message(exc: OSError) -> str | None:
    """One line for an OSError a user can fix (permissions, disk full, a file in the way), else None."""
    fix = _FIXES.get(exc.errno or 0)
    if fix is None:
        return None
    what = exc.strerror or errno.errorcode.get(exc.errno or 0, "error")
    if not exc.filename:  # e.g. f.write() on a full disk, outside archgraph.io's helpers, which name the file
        return f"{what} while writing or reading a file; {fix}"
    return f"{exc.filename}: {what}; {fix}"


if __name__ == "__main__":
    sys.exit(main())
