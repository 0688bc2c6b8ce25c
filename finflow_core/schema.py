"""The declared quality rules of a batch, as pandera schemas built from the config.

Two schemas, because a cell must be readable before it can be judged:
  * the *cell* schema runs on the raw text of every cell: present when required, a
    number / integer / ISO date where one is declared, no spreadsheet formula;
  * the *value* schema runs on the typed values: ranges, categories, lengths, unique ids.
Each check is named with a rule of :data:`RULES`, so a failure says which rule broke.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

from finflow_core.config import ColumnSpec, Config

#: rule name -> what it means, for people reading a quarantine report.
RULES: dict[str, str] = {
    "not_null": "a value is required",
    "number": "must be a number",
    "integer": "must be a whole number",
    "date": "must be a date written YYYY-MM-DD",
    "formula": "text that a spreadsheet would run as a formula",
    "in_range": "outside the allowed range",
    "category": "not one of the allowed categories",
    "max_length": "text is too long",
    "duplicate_id": "application id already used earlier in the batch",
    "field_count": "the row does not have one cell per column",
}
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


def is_blank(s: pd.Series) -> pd.Series:
    return s.isna() | (s.astype(str).str.strip() == "")


def cell_schema(config: Config, columns: list[ColumnSpec]) -> pa.DataFrameSchema:
    """Checks on the raw text of each cell (all columns read as strings)."""
    return pa.DataFrameSchema(
        {c.name: pa.Column(object, _cell_checks(c), nullable=True, coerce=False) for c in columns},
        strict=False,
    )


def value_schema(config: Config, columns: list[ColumnSpec]) -> pa.DataFrameSchema:
    """Checks on typed values; missing values were judged by the cell schema."""
    cols: dict[str, pa.Column] = {}
    for c in columns:
        checks: list[pa.Check] = []
        if c.is_numeric and (c.min is not None or c.max is not None):
            checks.append(_range_check(c))
        if c.type == "category":
            allowed = set(c.categories)
            checks.append(pa.Check(lambda s, a=allowed: s.isin(a), name="category", ignore_na=True))
        if c.type == "string" and c.max_length:
            n = int(c.max_length)
            checks.append(pa.Check(lambda s, n=n: s.str.len() <= n, name="max_length", ignore_na=True))
        unique = c.role == "id"
        cols[c.name] = pa.Column(
            object if not c.is_numeric else float, checks, nullable=True, coerce=False,
            unique=unique, report_duplicates="exclude_first",
        )
    return pa.DataFrameSchema(cols, strict=False)


def _cell_checks(c: ColumnSpec) -> list[pa.Check]:
    checks: list[pa.Check] = []
    if not c.nullable:
        checks.append(pa.Check(lambda s: ~is_blank(s), name="not_null"))
    if c.is_numeric:
        checks.append(pa.Check(lambda s: is_blank(s) | _parses(s), name="number"))
        if c.type == "integer":
            checks.append(pa.Check(lambda s: is_blank(s) | ~_parses(s) | _whole(s), name="integer"))
    elif c.type == "date":
        checks.append(pa.Check(lambda s: is_blank(s) | _is_date(s), name="date"))
    else:
        checks.append(pa.Check(lambda s: ~s.astype(str).str.startswith(FORMULA_PREFIXES), name="formula"))
    return checks


def _range_check(c: ColumnSpec) -> pa.Check:
    lo = float("-inf") if c.min is None else c.min
    hi = float("inf") if c.max is None else c.max
    return pa.Check(lambda s: (s >= lo) & (s <= hi), name="in_range", ignore_na=True)


def _parses(s: pd.Series) -> pd.Series:
    num = pd.to_numeric(s.astype(str).str.strip(), errors="coerce")
    finite = num.notna() & (num.abs() != float("inf"))
    return pd.Series(finite.to_numpy(), index=s.index)


def _whole(s: pd.Series) -> pd.Series:
    num = pd.to_numeric(s.astype(str).str.strip(), errors="coerce")
    return pd.Series(((num % 1) == 0).to_numpy(), index=s.index)


def _is_date(s: pd.Series) -> pd.Series:
    text = s.astype(str).str.strip()
    parsed = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    return text.str.match(DATE_PATTERN) & parsed.notna()


def checkable(s: pd.Series, c: ColumnSpec) -> pd.Series:
    """Values as the value schema judges them: numbers as floats, text as text, blanks missing."""
    blank = is_blank(s)
    if c.is_numeric:
        num = pd.to_numeric(s.astype(str).str.strip().where(~blank), errors="coerce").astype("float64")
        # "inf" already broke the "number" rule: judge it once, not again as out of range
        return num.where(np.isfinite(num))
    return s.where(~blank).astype(object)


def typed_column(s: pd.Series, c: ColumnSpec) -> pd.Series:
    """Final typed values of a column, for rows that passed every check."""
    blank = is_blank(s)
    text = s.astype(str).str.strip().where(~blank)
    if c.type == "integer":
        return pd.to_numeric(text, errors="coerce").round().astype("Int64")
    if c.type == "float":
        return pd.to_numeric(text, errors="coerce").astype("float64")
    if c.type == "date":
        return pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    if c.type == "category":
        return pd.Series(pd.Categorical(s.where(~blank), categories=list(c.categories)), index=s.index)
    return s.where(~blank).astype(object)
