"""How numbers read on screen."""

from __future__ import annotations

from typing import Any

BAND_NAMES = {"low": "Low risk", "medium": "Medium (review)", "high": "High risk"}
BAND_SHORT = {"low": "Low", "medium": "Medium", "high": "High"}
DECISION_NAMES = {"approve": "Approve", "review": "Manual review", "decline": "Decline"}
BAND_COLOURS = {"low": "#3a8d5c", "medium": "#d39b2a", "high": "#c2473d"}


def money(value: float | None, currency: str = "", digits: int = 0) -> str:
    if value is None:
        return "–"
    text = f"{value:,.{digits}f}"
    return f"{currency} {text}".strip()


def compact(value: float | None, currency: str = "") -> str:
    """1.2m, 350k: for metrics where the width is tight."""
    if value is None:
        return "–"
    for limit, suffix in ((1e9, "bn"), (1e6, "m"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{currency} {value / limit:,.1f}{suffix}".strip()
    return f"{currency} {value:,.0f}".strip()


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}%}"


def count(value: Any) -> str:
    return f"{int(value):,}"


def when(iso: str | None) -> str:
    """An ISO UTC time stamp as 'YYYY-MM-DD HH:MM UTC'."""
    if not iso:
        return "–"
    return iso[:16].replace("T", " ") + " UTC"


def cell(text: str | None) -> str:
    """A number as written in a file, made readable (3744600.0 -> 3,744,600); text unchanged."""
    if text is None or text == "":
        return ""
    try:
        value = float(text)
    except ValueError:
        return text
    if value != value:  # NaN
        return text
    if value.is_integer():
        return f"{int(value):,}"
    return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.2f}"
