"""Error types users see. Each message names the problem and the fix; the CLI prints it on one line."""

from __future__ import annotations


class ArchgraphError(ValueError):
    """Base of every user-facing error: the CLI prints ``error: <message>`` and exits with status 2."""


class GraphError(ArchgraphError):
    """A graph does not follow the schema (see :mod:`archgraph.core.graph`)."""


class ConfigError(ArchgraphError):
    """A config file or ``--set`` override is wrong (unknown key, wrong type)."""


class CheckpointError(ArchgraphError):
    """A checkpoint or run folder is missing, corrupt or from an incompatible run."""


class RegistryError(ArchgraphError):
    """An unknown space, strategy or op name."""


class NumericalError(ArchgraphError):
    """A loss or parameter became NaN or Inf; the run stopped and kept its last good checkpoint."""


class NonFiniteLoss(ArithmeticError):
    """Raised by a strategy's loss *before* backward when it is NaN/Inf, so the search loop can
    skip the batch (``search.on_nonfinite: skip``) with no update applied, or stop cleanly."""

    def __init__(self, what: str):
        super().__init__(f"non-finite {what}")
        self.what = what


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, carrying the one line a person should see (where the run stopped, what was
    saved, how to continue). The CLI prints that line alone, so an interruption says one thing once."""
