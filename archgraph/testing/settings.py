"""How the checks run a strategy: its :class:`~archgraph.core.strategy_checks.CheckSettings`.

One place reads them, so the checks, the planted run and the tests agree; a strategy written before
the settings were one object declared four class attributes (``eval_is_derived``, ``check_options``,
``planted_options``, ``planted_steps``), and those are still honoured where a class sets them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from archgraph.core.strategy_checks import CheckSettings

_LEGACY = {"eval_is_derived": "eval_is_derived", "check_options": "options", "planted_options": "planted_options", "planted_steps": "planted_steps"}


def check_settings(cls: type) -> CheckSettings:
    """``cls.checks``, with any of the four older class attributes the class (or a parent) sets on top."""
    settings = getattr(cls, "checks", None)
    if not isinstance(settings, CheckSettings):
        settings = CheckSettings()
    legacy: dict[str, Any] = {new: getattr(cls, old) for old, new in _LEGACY.items() if getattr(cls, old, None) is not None}
    return dataclasses.replace(settings, **legacy) if legacy else settings
