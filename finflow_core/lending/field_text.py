"""A value of an application as a person reads it, by the unit its column declares.

One rule for the application table on the review desk and for the values quoted in reason
codes, so a case never shows ``250000.0`` in one place and ``USD 250,000`` in another.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from finflow_core import formatting as fmt
from finflow_core.lending.config import Config


def absent(value: Any) -> bool:
    """No value at all (None, NA, NaN); an empty or odd text is still a value as written."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


#: The unit a column of a role has when it declares none.
ROLE_UNITS = {"loan_amount": "money", "income": "money", "interest_rate": "percent", "term": "months"}


def field_text(config: Config, name: str, value: Any) -> str:
    """A value of a column or ratio as the application table shows it, by its unit (see
    ``unit`` in the config): money with the currency (``USD 250,000``), rates as
    percentages (``19.28%``), ``24 months``, ``3.5 years``; other numbers with separators
    (ratios with two decimals, none from 1,000); codes as written; missing is ``–``."""
    if absent(value) or (isinstance(value, str) and not value.strip()):
        return fmt.MISSING
    ratio = next((r for r in config.ratios if r.name == name), None)
    if ratio is not None:  # 0.62; a ratio in the thousands needs no decimals
        if ratio.unit is not None:
            return _in_unit(config, ratio.unit, value)
        return fmt.number(value, 2) if abs(float(value)) < 1000 else fmt.count(value)
    try:
        col = config.column(name)
    except KeyError:
        return fmt.text(value)
    if col.type in ("category", "string", "date"):  # a code as written ("none" is a code)
        return fmt.clean(str(value)).strip()
    if fmt.is_missing(value):
        return fmt.MISSING
    unit = col.unit or ROLE_UNITS.get(str(col.role))
    if unit is not None:
        return _in_unit(config, unit, value)
    if col.type == "integer":
        return fmt.count(value)
    return fmt.as_written(value)


def rounding_of(config: Config, name: str) -> tuple[int, float] | None:
    """How :func:`field_text` rounds a number of this feature, when its text depends on the
    rounded number alone: (decimals, only below this size); None when it does not (text as
    written, a unit such as months, no column)."""
    ratio = next((r for r in config.ratios if r.name == name), None)
    if ratio is not None:
        return _unit_rounding(ratio.unit) if ratio.unit is not None else (2, 1000.0)
    try:
        col = config.column(name)
    except KeyError:
        return None
    if col.type in ("category", "string", "date"):
        return None
    unit = col.unit or ROLE_UNITS.get(str(col.role))
    if unit is not None:
        return _unit_rounding(unit)
    return (0, math.inf) if col.type == "integer" else None


def _unit_rounding(unit: str) -> tuple[int, float] | None:
    # money: whole units; percent: two decimals of the percentage, four of the fraction
    return {"money": (0, math.inf), "percent": (4, math.inf)}.get(unit)


def _in_unit(config: Config, unit: str, value: Any) -> str:
    if unit == "money":
        return fmt.money(value, config.economics.currency)
    if unit == "percent":
        return fmt.rate(value)
    shown = fmt.as_written(value)
    word = unit if shown != "1" else unit[:-1]  # 1 month, 3.5 years
    return f"{shown} {word}" if shown != fmt.MISSING else shown
