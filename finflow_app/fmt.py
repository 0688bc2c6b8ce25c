"""How figures read on screen: the app's short names for ``finflow_core.formatting``.

The rules live in the core (the reports and the CLI use the same ones); this module keeps
the names the pages already import, plus the app's words for bands and decisions. The
installation's time zone is set once per process with :func:`set_time_zone` (it is one
setting for everybody who uses the installation); until then times are shown in UTC.
"""

from __future__ import annotations

from typing import Any

from finflow_core import formatting as _f
from finflow_core.formatting import (  # noqa: F401  (re-exported for pages)
    MISSING,
    Formatter,
    is_missing,
    money_delta,
    number,
    points,
    points_delta,
    probability,
    rate,
)

BAND_NAMES = {"low": "Low risk", "medium": "Medium (review)", "high": "High risk"}
BAND_SHORT = {"low": "Low", "medium": "Medium", "high": "High"}
DECISION_NAMES = {"approve": "Approve", "review": "Manual review", "decline": "Decline"}
BAND_COLOURS = {"low": "#3a8d5c", "medium": "#d39b2a", "high": "#c2473d"}

_zone = "UTC"


def set_time_zone(name: str) -> None:
    """Show every time in zone ``name`` (IANA, e.g. ``Europe/London``); ValueError if unknown."""
    global _zone
    _f.zone(name)
    _zone = name


def time_zone() -> str:
    return _zone


def money(value: float | None, currency: str = "", digits: int = 0) -> str:
    """``USD 1,234`` (``digits=2`` for one loan); a loss as ``-USD 1,234``."""
    return _f.money(value, currency, decimals=digits)


def compact(value: float | None, currency: str = "") -> str:
    """``USD 1.2m``, ``USD 350k``: for metrics where the width is tight."""
    return _f.compact(value, currency)


def pct(value: float | None, digits: int = 1) -> str:
    """A share or rate with fixed decimals: ``80.0%``."""
    return _f.percent(value, digits)


def count(value: Any) -> str:
    return _f.count(value)


def when(value: Any) -> str:
    """A time stamp to the minute in the installation's zone: ``2026-12-01 09:41``."""
    return _f.when(value, _zone)


def day(value: Any) -> str:
    return _f.day(value, _zone)


def text(value: Any, limit: int | None = None) -> str:
    """Anything as words: never ``None``, ``nan``, ``NaT`` or raw JSON (missing is ``–``)."""
    return _f.text(value, _zone, limit=limit)


def cell(value: Any) -> str:
    """A number as written in a file, made readable (3744600.0 -> 3,744,600); text unchanged."""
    return _f.as_written(value)
