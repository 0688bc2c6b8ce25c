"""How figures read on screen: the app's short names for ``finflow_core.formatting``.

The rules live in the core (the reports and the CLI use the same ones); this module keeps
the names the pages already import, plus the app's words for bands and decisions, and two
things only a Streamlit screen needs:

* :func:`md` makes any user-supplied string (an application id, a file name, a note, a user
  name) safe inside Markdown: Streamlit renders Markdown in titles, captions, alerts, metric
  labels and values, so ``[Verify here](http://x)`` would become a live link and
  ``![x](http://x/y.png)`` would make the browser fetch that image. Every character that
  can open Markdown inline (links and images, emphasis, code, HTML, math, strikethrough,
  entities) is backslash-escaped, and so are block markers at the start; CommonMark shows
  an escaped character as written. What GFM links by itself (``://``, ``www.``, ``@``) is
  found by Streamlit's renderer in the text *after* escapes are read, so there an invisible
  word joiner (:data:`JOINER`) breaks the pattern too. Line breaks are spaces. Where a whole line is user text, pages use ``st.text``
  or a table cell instead.
* column helpers for ``st.dataframe``: money in whole units with thousands, rates as
  percentages with fixed decimals, measures with fixed decimals, so table cells read like
  the figures around them and still sort as numbers.

The installation's time zone is set once per process with :func:`set_time_zone` (it is one
setting for everybody who uses the installation); until then times are shown in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import streamlit as st

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


_MD_ESCAPE = str.maketrans({c: "\\" + c for c in "\\`*_[]<>~$&"})
_AUTOLINK = re.compile(r"(?i)://|(?<=www)\.|@")
#: U+2060 WORD JOINER: invisible, no line break. Streamlit's Markdown also finds bare links
#: (``http://``, ``www.``, ``a@b.c``) in the text *after* escapes are read (remark-gfm's
#: autolink-literal transform), so a backslash alone does not stop them: the joiner breaks
#: the pattern while the reader sees the text unchanged.
JOINER = "\u2060"
_UNLINKED = {"://": "\\:" + JOINER + "\\/\\/", ".": JOINER + "\\.", "@": "\\@" + JOINER}
_BLOCK_START = re.compile(r"^(\s*)([#>+=|-]|\d+[.)])")


def md(value: Any, limit: int | None = None) -> str:
    """Any value as literal text inside Markdown (user data is never Markdown): missing is
    ``–``, control characters go, Markdown syntax is escaped and bare links are broken with
    an invisible :data:`JOINER` (see the module doc)."""
    s = text(value, limit=limit).translate(_MD_ESCAPE)
    s = _AUTOLINK.sub(lambda m: _UNLINKED[m.group(0)], s)
    return _BLOCK_START.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], s)


# -- table columns ------------------------------------------------------------------------------

def money_column(label: str, currency: str = "") -> Any:
    """Money in whole currency units with thousands separators; the currency in the header."""
    return st.column_config.NumberColumn(f"{label} ({currency})" if currency else label, format="localized",
                                         step=1)


def percent_column(label: str, decimals: int = 1) -> Any:
    """A share or rate (0.8) shown as ``80.0%``."""
    return st.column_config.NumberColumn(label, format="percent", step=10 ** -(decimals + 2))


def number_column(label: str, decimals: int = 3) -> Any:
    """A measure with fixed decimals: AUC ``0.820``, PSI ``0.031``."""
    return st.column_config.NumberColumn(label, format=f"%.{decimals}f")


def count_column(label: str) -> Any:
    return st.column_config.NumberColumn(label, format="localized", step=1)


def text_cells(values: Iterable[Any]) -> list[str]:
    """Cells as words (``–`` for missing, JSON as readable text): for text columns."""
    return [text(v) for v in values]


def time_cells(values: Iterable[Any]) -> list[str]:
    """Moments to the minute in the installation's zone (they still sort as time)."""
    return [when(v) for v in values]


def rounded(table: Any, column_config: dict[str, Any]) -> Any:
    """``table`` with every number column rounded to its column's step.

    Streamlit *truncates* a NumberColumn's values to its step (0.6928 at step 0.001 shows as
    69.2%), so a table would disagree with the tile beside it (69.3%). Rounding first makes
    the truncation a no-op."""
    import pandas as pd

    out = table.copy()
    for col, conf in column_config.items():
        step = (conf or {}).get("type_config", {}).get("step") if isinstance(conf, dict) else None
        if not step or col not in out.columns or not pd.api.types.is_float_dtype(out[col]):
            continue
        decimals = max(0, -int(f"{float(step):e}".split("e")[1]))
        out[col] = pd.Series([_f.rounded(v, decimals) for v in out[col]], index=out.index,
                             dtype=float)  # half away from zero, as the tiles round
    return out

