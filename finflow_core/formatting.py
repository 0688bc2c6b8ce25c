"""Figures a person reads: one set of rules for the app, the reports and the command line.

Pure (no Streamlit, no pandas), so every screen, report and export says the same figure the
same way. The rules, and why:

- **Money**: currency code first, thousands separators. Aggregates (portfolio totals, weekly
  sums, band amounts) are whole currency units, ``USD 145,719,013``: cents of a
  seven-figure total are noise. One application's own figures may ask for ``decimals=2``
  (``USD 1,234.56``). Small tiles use :func:`compact` (``USD 1.2m``). A negative amount
  puts the minus sign first, ``-USD 19,245``: Streamlit's ``st.metric`` reads only a
  leading ``-`` as a fall, so ``USD -19,245`` would show as a green up-arrow.
- **Percentages** have a fixed number of decimals: shares and portfolio rates 1
  (``80.0%``), probabilities of default 1 with ``<0.1%`` / ``>99.9%`` at the ends (a tiny
  risk never reads as none), interest rates 2 (``0.1928 -> 19.28%``).
- **Changes in percentage points**: ``+1.2 pts``; a change that rounds to zero is
  ``0.0 pts`` (and *no* delta for a metric: :func:`points_delta` returns ``None``), never
  ``-0.00``.
- **Rounding** is half away from zero, the way people round (``2.5 -> 3``), on the number as
  written (``0.1235 -> 12.35%``), not banker's rounding on the binary float.
- **Times** to the minute (truncated, like a clock) in the installation's time zone, no
  ``T``, no seconds: ``2026-12-01 09:41``. A time without a zone is UTC (the store writes
  UTC). ``zone=True`` adds the abbreviation (``GMT``/``BST``), which also tells apart the
  two 01:30s of the autumn clock change.
- **Missing** (``None``, NaN, NaT, ``pd.NA``, ``""``, the words ``None``/``nan``/``NaT``/
  ``null``) is ``–``. :func:`text` turns anything (mappings, lists, JSON text, enums,
  numpy scalars) into readable words, and strips control and bidi-override characters so
  an uploaded name cannot reorder or hide what is shown.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import Enum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MISSING = "–"
_MISSING_WORDS = frozenset({"none", "nan", "nat", "null", "<na>"})
#: Characters that reorder the text around them when shown (embeddings, overrides, isolates).
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_COMPACT = tuple(
    (Decimal(10) ** e, suffix) for e, suffix in ((0, ""), (3, "k"), (6, "m"), (9, "bn"), (12, "tn"))
)


# -- helpers ----------------------------------------------------------------------------------


def is_missing(value: Any) -> bool:
    """True for None, NaN, NaT, pd.NA, infinities, and empty or 'None'-like text."""
    if value is None:
        return True
    if isinstance(value, str):
        s = value.strip()
        return not s or s.lower() in _MISSING_WORDS
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Decimal):
        return not value.is_finite()
    if getattr(value, "ndim", 0):  # an array is a value, not a missing one
        return False
    try:
        return bool(value != value)  # NaT (numpy and pandas)
    except (TypeError, ValueError):  # pd.NA refuses a truth value
        return True


def _decimal(value: Any) -> Decimal | None:
    """The number as written (repr of a float), or None when it is not a finite number."""
    if is_missing(value) or isinstance(value, bool):
        return None
    try:
        if isinstance(value, Decimal):
            d = value
        elif isinstance(value, numbers.Integral):
            d = Decimal(int(value))
        else:
            d = Decimal(repr(float(value)))
    except (TypeError, ValueError, InvalidOperation):
        return None
    return d if d.is_finite() else None


def _round(d: Decimal, decimals: int) -> Decimal:
    q = d.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return abs(q) if q == 0 else q  # never "-0.00"


def rounded(value: Any, decimals: int) -> float | None:
    """``value`` rounded by the rules above (half away from zero, on the number as written),
    for a table that shows numbers itself; None when it is no finite number."""
    d = _decimal(value)
    return None if d is None else float(_round(d, decimals))


def _grouped(d: Decimal, decimals: int) -> str:
    return f"{_round(d, decimals):,.{decimals}f}"


def _with_code(body: str, negative: bool, currency: str) -> str:
    code = f"{currency} " if currency else ""
    return f"-{code}{body}" if negative else f"{code}{body}"


# -- money ------------------------------------------------------------------------------------


def money(value: Any, currency: str = "", *, decimals: int = 0) -> str:
    """``USD 145,719,013``; ``-USD 19,245``; ``decimals=2`` for one loan's figures.

    >>> money(145_719_012.688, "USD"), money(-19_245.4, "USD"), money(1234.565, "EUR", decimals=2)
    ('USD 145,719,013', '-USD 19,245', 'EUR 1,234.57')
    """
    d = _decimal(value)
    if d is None:
        return MISSING
    r = _round(d, decimals)
    return _with_code(_grouped(abs(r), decimals), r < 0, currency)


def compact(value: Any, currency: str = "") -> str:
    """For small tiles: ``USD 1.2m``, ``USD 350k``, ``-USD 12.3k``, ``USD 950``.

    One decimal below 100 of the unit, none from 100; a value that rounds up to the next
    unit moves to it (999,960 -> ``1.0m``, not ``1,000k``).
    """
    d = _decimal(value)
    if d is None:
        return MISSING
    size = abs(d)
    for i, (unit, suffix) in enumerate(_COMPACT):
        scaled = size / unit
        digits = 0 if unit == 1 or scaled >= 100 else 1
        shown = _round(scaled, digits)
        body = f"{shown:,.{digits}f}{suffix}"
        if shown < 1000 or i == len(_COMPACT) - 1:
            break
    return _with_code(body, d < 0 and shown > 0, currency)


def money_delta(change: Any, currency: str = "", *, decimals: int = 0) -> str | None:
    """A change of money for ``st.metric(delta=...)``: ``+USD 1,200`` / ``-USD 19,245``, or
    None (no arrow at all) when it is missing or rounds to zero."""
    d = _decimal(change)
    if d is None or _round(d, decimals) == 0:
        return None
    text = money(d, currency, decimals=decimals)
    return text if text.startswith("-") else f"+{text}"


# -- shares, rates, probabilities ---------------------------------------------------------------


def percent(value: Any, decimals: int = 1) -> str:
    """A fraction as a percentage with fixed decimals: 0.8 -> ``80.0%``, -0.0004 -> ``0.0%``."""
    d = _decimal(value)
    return MISSING if d is None else f"{_grouped(d * 100, decimals)}%"


def probability(value: Any) -> str:
    """A probability of default, 1 decimal: ``12.3%``; ``<0.1%`` / ``>99.9%`` at the ends."""
    d = _decimal(value)
    if d is None:
        return MISSING
    if 0 < d < Decimal("0.0005"):
        return "<0.1%"
    if Decimal("0.9995") <= d < 1:
        return ">99.9%"
    return percent(d, 1)


def rate(value: Any) -> str:
    """An interest rate, 2 decimals: 0.1928 -> ``19.28%``."""
    return percent(value, 2)


def points(change: Any, decimals: int = 1) -> str:
    """A difference of two fractions in percentage points: 0.012 -> ``+1.2 pts``;
    -0.00004 -> ``0.0 pts`` (no sign when it rounds to zero)."""
    d = _decimal(change)
    if d is None:
        return MISSING
    r = _round(d * 100, decimals)
    sign = "+" if r > 0 else "-" if r < 0 else ""
    return f"{sign}{_grouped(abs(r), decimals)} pts"


def points_delta(change: Any, decimals: int = 1) -> str | None:
    """:func:`points` for ``st.metric(delta=...)``: None when missing or rounding to zero."""
    d = _decimal(change)
    if d is None or _round(d * 100, decimals) == 0:
        return None
    return points(d, decimals)


# -- counts and plain numbers -------------------------------------------------------------------


def count(value: Any) -> str:
    """A whole number with thousands separators: ``1,234,567``; 2.5 -> ``3``."""
    d = _decimal(value) if not isinstance(value, str) else _decimal(_number_text(value))
    return MISSING if d is None else _grouped(d, 0)


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 batch``, ``2 batches``, ``1,204 officer decisions``: a count with its noun agreeing."""
    word = noun if n == 1 else (plural or (noun + "es" if noun.endswith(("s", "sh", "ch", "x"))
                                          else noun + "s"))
    return f"{count(n)} {word}"


def tallied(counts: Mapping[str, int], words: Mapping[str, str]) -> str:
    """Codes with their counts, each code in words (a quality-gate rule, an issue kind); an
    unknown code with underscores as spaces.

    >>> tallied({"max_length": 1, "number": 12}, {"max_length": "text is too long"})
    'text is too long ×1, number ×12'
    """
    return ", ".join(f"{words.get(code) or clean(str(code)).replace('_', ' ')} ×{count(n)}"
                     for code, n in counts.items()) or MISSING


def number(value: Any, decimals: int = 2) -> str:
    """A measurement with fixed decimals: PSI 0.31 -> ``0.310`` (``decimals=3``)."""
    d = _decimal(value) if not isinstance(value, str) else _decimal(_number_text(value))
    return MISSING if d is None else _grouped(d, decimals)


def _number_text(s: str) -> float | None:
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


def as_written(value: Any) -> str:
    """A cell of an uploaded file made readable: ``3744600.0 -> 3,744,600``,
    ``0.19280 -> 0.1928``; text is kept (cleaned)."""
    if is_missing(value):
        return MISSING
    if isinstance(value, str):
        f = _number_text(value) if value.strip()[:1] in "+-.0123456789" else None
        if f is None:
            return clean(value)
        value = f
    d = _decimal(value)
    if d is None:
        return text(value)
    if d == d.to_integral_value():
        return _grouped(d, 0)
    if abs(d) >= 1000:
        return _grouped(d, 2)
    return f"{_round(d, 4):,.4f}".rstrip("0").rstrip(".")


# -- dates and times ----------------------------------------------------------------------------


@lru_cache(maxsize=64)
def zone(name: str) -> tzinfo:
    """The named IANA zone (``Europe/London``); ValueError naming it when there is none."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/London' or 'UTC'"
        ) from exc


def _as_datetime(value: Any) -> datetime | date | None:
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, str):
        s = value.strip()
        try:
            return datetime.fromisoformat(s) if len(s) > 10 else date.fromisoformat(s)
        except ValueError:
            return None
    return None


def when(value: Any, tz: str = "UTC", *, zone_name: bool = False) -> str:
    """A moment to the minute in zone ``tz``: ``2026-12-01 09:41`` (``zone_name``: ``... GMT``).

    Accepts datetimes (a naive one is UTC), ISO text (``T``, ``Z``, offsets, microseconds)
    and dates (shown as the day). Text that is no time is shown as text, never raised.
    """
    if is_missing(value):
        return MISSING
    moment = _as_datetime(value)
    if moment is None:
        return text(value)
    if not isinstance(moment, datetime):
        return moment.isoformat()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone(zone(tz))
    shown = local.strftime("%Y-%m-%d %H:%M")
    return f"{shown} {local.tzname()}" if zone_name else shown


def day(value: Any, tz: str = "UTC") -> str:
    """A calendar day: ``2026-10-12`` (a moment is taken in zone ``tz`` first)."""
    if is_missing(value):
        return MISSING
    moment = _as_datetime(value)
    if moment is None:
        return text(value)
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(zone(tz)).date()
    return moment.isoformat()


# -- anything else ------------------------------------------------------------------------------


def clean(value: str) -> str:
    """Text safe to show: line breaks and tabs become spaces; other control characters and
    bidi overrides (which can reorder what a reader sees) are removed."""
    out = []
    for ch in value:
        if ch in "\n\r\t":
            out.append(" ")
        elif ch in BIDI_CONTROLS or unicodedata.category(ch) == "Cc":
            continue
        else:
            out.append(ch)
    return "".join(out)


def sentence(value: str) -> str:
    """A message as a sentence on its own: first letter upper case, a full stop unless it
    ends with punctuation already.

    >>> sentence("you signed out: sign in again")
    'You signed out: sign in again.'
    """
    s = value.strip()
    if not s:
        return s
    return s[:1].upper() + s[1:] + ("" if s[-1] in ".!?…)" else ".")


def clip(value: str, limit: int | None) -> str:
    """At most ``limit`` characters, the cut marked with an ellipsis."""
    if limit is None or len(value) <= limit:
        return value
    return value[: max(limit - 1, 0)] + "…"


#: ISO 8601 date and time as text: ``2026-12-02T13:48:52.418851+00:00``.
_ISO_MOMENT = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?$")


def text(value: Any, tz: str = "UTC", *, limit: int | None = None) -> str:
    """Any value as words for a person: never ``None``, ``nan``, ``NaT`` or raw JSON.

    >>> text(None), text({"file_name": "w1.csv", "rows": 1200}), text('{"a": [1, 2]}')
    ('–', 'file name: w1.csv; rows: 1,200', 'a: 1, 2')
    """
    return clip(_text(value, tz, depth=0), limit)


def _text(value: Any, tz: str, depth: int) -> str:
    if is_missing(value):
        return MISSING
    if isinstance(value, Enum):
        return _text(value.value, tz, depth)
    if type(value).__module__ == "numpy":  # scalars and arrays as plain Python
        value = value.tolist() if getattr(value, "ndim", 0) else value.item()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return count(value)
    if isinstance(value, numbers.Real | Decimal):
        return as_written(value)
    if isinstance(value, datetime | date):
        return when(value, tz) if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        s = clean(value).strip()
        if _ISO_MOMENT.match(s):  # a time stamp stored as text (audit details): to the minute
            return when(s, tz)
        if s[:1] in "{[" and depth < 4:
            try:
                parsed = json.loads(s)
            except ValueError:
                return s
            if isinstance(parsed, dict | list):
                return _text(parsed, tz, depth + 1)
        return s
    if isinstance(value, Mapping):
        if not value:
            return MISSING
        parts = []
        for k, v in value.items():
            inner = _text(v, tz, depth + 1)
            if isinstance(v, Mapping) and v:
                inner = f"({inner})"
            parts.append(f"{clean(str(k)).replace('_', ' ')}: {inner}")
        return "; ".join(parts)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return ", ".join(_text(v, tz, depth + 1) for v in items) if items else MISSING
    return clean(str(value)).strip() or MISSING


# -- one object for an installation ---------------------------------------------------------------


@dataclass(frozen=True)
class Formatter:
    """The rules above bound to one installation's currency and time zone.

    >>> f = Formatter("USD", "Europe/London")
    >>> f.money(-19_245), f.compact(1_234_567), f.when("2026-07-01T08:41:59.123Z")
    ('-USD 19,245', 'USD 1.2m', '2026-07-01 09:41')
    """

    currency: str = ""
    tz: str = "UTC"

    def __post_init__(self) -> None:
        zone(self.tz)  # an unknown zone fails here, at start-up, not on the first screen

    def money(self, value: Any, *, decimals: int = 0) -> str:
        return money(value, self.currency, decimals=decimals)

    def compact(self, value: Any) -> str:
        return compact(value, self.currency)

    def money_delta(self, change: Any, *, decimals: int = 0) -> str | None:
        return money_delta(change, self.currency, decimals=decimals)

    def when(self, value: Any, *, zone_name: bool = False) -> str:
        return when(value, self.tz, zone_name=zone_name)

    def day(self, value: Any) -> str:
        return day(value, self.tz)

    def text(self, value: Any, *, limit: int | None = None) -> str:
        return text(value, self.tz, limit=limit)

    percent = staticmethod(percent)
    probability = staticmethod(probability)
    rate = staticmethod(rate)
    points = staticmethod(points)
    points_delta = staticmethod(points_delta)
    count = staticmethod(count)
    number = staticmethod(number)
    as_written = staticmethod(as_written)
