"""What the strategy checks report: one :class:`CheckResult` per check (``PASS``, ``FAIL`` or
``SKIP`` with its reason) gathered in a :class:`CheckReport`, and :class:`CheckFailed`, which a check
raises to fail with a reason.

The checks live in several modules (:mod:`~archgraph.testing.checks`, :mod:`~archgraph.testing.resume`,
the shared run of :mod:`~archgraph.testing.harness`); this is the one vocabulary of outcomes they
share, and what ``archgraph check-strategy`` and a plug-in's own tests read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CheckFailed", "CheckReport", "CheckResult"]


@dataclass
class CheckResult:
    check: str
    status: str  # PASS | FAIL | SKIP
    reason: str
    seconds: float = 0.0

    def line(self) -> str:
        return f"{self.status} {self.check}: {self.reason} ({self.seconds:.1f}s)"


@dataclass
class CheckReport:
    strategy: str
    space: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status != "FAIL" for r in self.results)

    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "FAIL"]

    def __getitem__(self, check: str) -> CheckResult:
        return next(r for r in self.results if r.check == check)

    def summary(self) -> str:
        counts = {s: sum(r.status == s for r in self.results) for s in ("PASS", "FAIL", "SKIP")}
        return f"{self.strategy} on {self.space}: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped"


class CheckFailed(Exception):
    """A check found the strategy wrong; the message is the reason printed (raised inside the checks,
    turned into a ``FAIL`` line by :func:`~archgraph.testing.checks.check_strategy`)."""
