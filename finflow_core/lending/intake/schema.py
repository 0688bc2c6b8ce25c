"""The declared quality rules of a batch: how cells are read, and the pandera schema of values.

Two steps, because a cell must be readable before it can be judged:
  * *reading* turns each cell's text into its declared type — a number, a whole number,
    a date — as the column says it is written (digit grouping, currency signs or units
    around a number, a percentage, a date format: :class:`ColumnSpec`), and marks the cells that cannot be read (rules ``number``, ``integer``,
    ``date``); it runs once per column with vectorised (Arrow) string operations;
  * the *value* schema (pandera) judges what was read: required values, ranges,
    categories, text length, spreadsheet formulas, duplicate application ids.
Each check is named with a rule of :data:`RULES`, so a failure says which rule broke.

A column's declared missing-value texts (``missing_values: [NA]``) read as blank, and a
category code that is not declared is judged by the column's ``on_unknown`` policy: the
``category`` rule quarantines it, or the typed value becomes missing (or the declared
``other`` category) and the code is counted by :func:`mapped_values`. The cells kept as
written never change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pyarrow
import pyarrow.compute as pc

from finflow_core.formatting import BIDI_CONTROLS
from finflow_core.lending.config import ColumnSpec
from finflow_core.lending.config.columns import ISO_DATE
from finflow_core.lending.spreadsheet import FORMULA_PATTERN

#: rule name -> what it means, for people reading a quarantine report.
RULES: dict[str, str] = {
    "not_null": "a value is required",
    "number": "must be a number",
    "integer": "must be a whole number",
    "date": "must be a date written as the column's date_format says (default YYYY-MM-DD)",
    "formula": "text that a spreadsheet would run as a formula",
    "control": "text with a control or direction-override character (it shows as other text "
               "than is stored)",
    "in_range": "outside the allowed range",
    "category": "not one of the allowed categories",
    "max_length": "text is too long",
    "duplicate_id": "application id already used earlier in the batch",
    "id_characters": "an application id may not hold control or text-direction characters",
    "field_count": "the row does not have one cell per column",
}
DATE_PATTERN = r"\d{4}-\d{2}-\d{2}"
#: What an id may not hold: C0 and C1 controls (tab, newline, NUL...) and the invisible
#: marks that reorder text (bidi overrides, isolates and direction marks). An id is how a
#: person finds a case again; one that reads differently from how it is stored cannot be.
ID_FORBIDDEN = "[\\x00-\\x1f\\x7f-\\x9f\u200e\u200f" + "".join(sorted(BIDI_CONTROLS)) + "]"
#: what counts as a number: optional sign, digits with an optional decimal part, optional
#: exponent; no thousands separators, currency signs, "nan" or "inf".
NUMBER_PATTERN = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"


#: A control character (escape, bell, backspace...) or a direction override anywhere in a text
#: cell: an id written "APP-\u202e1234" reads "APP-4321" in a letter or on a page. A tab or a
#: line break inside a quoted cell is text as written (at its start it is a formula).
CONTROL_PATTERN = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f" + "".join(sorted(BIDI_CONTROLS)) + "]"


#: Columns of a value-mapping count: the column, the cell as written, what it became, rows.
MAPPED_COLUMNS = ["column", "value", "mapped_to", "count"]


@dataclass
class ReadColumn:
    """One column after reading: typed values (missing where blank or unreadable).

    ``token`` marks the cells that held one of the column's declared missing-value texts
    (they are blank too).
    """

    values: pd.Series
    blank: np.ndarray
    unreadable: np.ndarray
    token: np.ndarray | None = None
    unknown: np.ndarray | None = None  # undeclared category codes, once asked for


def as_text(s: pd.Series) -> pd.Series:
    """The column as pandas' Arrow-backed text (a no-op for text read from a batch)."""
    return s if isinstance(s.dtype, pd.StringDtype) else s.astype("str")


def read_column(raw: pd.Series, c: ColumnSpec) -> ReadColumn:
    """Read a column of cell texts as its declared type, marking blanks and unreadable cells.

    Works on the Arrow array directly: a handful of compute kernels per column, cheap for
    one typed application and for a million rows alike.
    """
    arr = pyarrow.array(as_text(raw), type=pyarrow.string(), from_pandas=True)
    stripped = pc.utf8_trim_whitespace(arr)
    blank = _mask(pc.or_kleene(pc.is_null(stripped), pc.equal(stripped, "")))
    token = None
    if c.missing_values:  # "NA", "?": declared to mean no value, so read as blank
        token = _mask(pc.is_in(stripped, value_set=pyarrow.array(list(c.missing_values)))) & ~blank
        blank = blank | token
    read = _read_typed(raw, c, arr, stripped, blank)
    read.token = token
    return read


def _read_typed(raw: pd.Series, c: ColumnSpec, arr: pyarrow.Array, stripped: pyarrow.Array,
                blank: np.ndarray) -> ReadColumn:
    if c.is_numeric:
        plain = plain_numbers(stripped, c)
        readable = _mask(pc.match_substring_regex(plain, f"^{NUMBER_PATTERN}$")) & ~blank
        values = pc.cast(pc.if_else(pyarrow.array(readable), plain, None), pyarrow.float64())
        values = values.to_numpy(zero_copy_only=False)
        if c.percent:
            values = values / 100.0
        readable &= np.isfinite(values)  # 1e999 reads as infinity: not a usable number
        if c.type == "integer":
            readable &= np.mod(np.where(readable, values, 0.0), 1) == 0
        values = np.where(readable, values, np.nan)
        return ReadColumn(pd.Series(values, index=raw.index, dtype="float64"), blank,
                          ~blank & ~readable)
    if c.type == "date":
        ok = ~blank
        if c.date_format is None:
            ok &= _mask(pc.match_substring_regex(stripped, f"^{DATE_PATTERN}$"))
        # pandas, not Arrow: Arrow's strptime turns 2026-02-30 into 2026-03-02
        text = pd.Series(pd.array(pc.if_else(pyarrow.array(ok), stripped, None), dtype="str"), index=raw.index)
        dates = pd.to_datetime(text, format=c.date_format or ISO_DATE, errors="coerce").astype("datetime64[us]")
        dates = in_calendar(dates)
        return ReadColumn(dates, blank, ~blank & dates.isna().to_numpy(dtype=bool))
    text = pd.Series(pd.array(pc.if_else(pyarrow.array(~blank), arr, None), dtype="str"), index=raw.index)
    return ReadColumn(text, blank, np.zeros(len(arr), dtype=bool))


def in_calendar(dates: pd.Series) -> pd.Series:
    """Dates read by pandas, missing where Python's calendar has none: pandas reads year 0
    (0000-01-01), whose week began in year -1 ("-001-12-27") and which breaks everything that
    reads it back (``.dt.date``: "year 0 is out of range")."""
    return dates.where(dates.isna() | (dates.dt.year >= 1))


def plain_numbers(cells: pyarrow.Array, c: ColumnSpec) -> pyarrow.Array:
    """A number column's trimmed cells as plain numbers: what ``strip`` lists taken from
    either end (after a sign too: ``-$5``), a trailing ``%`` of a percent column, and the
    ``thousands`` mark where digits are grouped in threes (``1,250.50``; ``1,25`` keeps it,
    so it is not a number) and a ``decimal`` comma read as the point; a declared code
    (``CHGOFF``) becomes its number."""
    for code, number in c.codes:
        cells = pc.if_else(pc.equal(cells, code.strip()), repr(float(number)), cells)
    if c.strip:
        alts = "|".join(_re2_literal(t.strip()) for t in sorted(c.strip, key=len, reverse=True))
        cells = pc.replace_substring_regex(cells, rf"^([+-]?)\s*(?:{alts})\s*", r"\1")
        cells = pc.replace_substring_regex(cells, rf"\s*(?:{alts})$", "")
    if c.percent:
        cells = pc.replace_substring_regex(cells, r"\s*%$", "")
    if c.thousands:
        mark, point = _re2_literal(c.thousands), _re2_literal(c.decimal)
        grouped = pc.match_substring_regex(cells, rf"^[+-]?\d{{1,3}}(?:{mark}\d{{3}})+(?:{point}\d*)?$")
        cells = pc.if_else(grouped, pc.replace_substring(cells, c.thousands, ""), cells)
    if c.decimal == ",":  # a "." left is no decimal mark here: the cell stays unreadable
        cells = pc.replace_substring(pc.replace_substring(cells, ".", "_"), ",", ".")
    return cells


def _re2_literal(text: str) -> str:
    """``text`` as a literal in an RE2 pattern (Arrow's regex engine)."""
    return "".join(ch if ch.isalnum() else f"\\x{{{ord(ch):x}}}" for ch in text)


def _mask(a: pyarrow.Array) -> np.ndarray:
    return a.fill_null(False).to_numpy(zero_copy_only=False).astype(bool, copy=True)


def reading_rule(c: ColumnSpec, raw: pd.Series, unreadable: np.ndarray) -> np.ndarray:
    """The rule each unreadable cell broke: 'integer' for a readable number with a fraction."""
    if c.type != "integer":
        return np.full(int(unreadable.sum()), "number" if c.is_numeric else "date", dtype=object)
    cells = pc.utf8_trim_whitespace(pyarrow.array(as_text(raw)[unreadable], type=pyarrow.string(),
                                                  from_pandas=True))
    is_number = _mask(pc.match_substring_regex(plain_numbers(cells, c), f"^{NUMBER_PATTERN}$"))
    return np.where(is_number, "integer", "number").astype(object)


def value_schema(columns: list[ColumnSpec]) -> pa.DataFrameSchema:
    """Checks on the values read; a cell that could not be read was already judged."""
    cols: dict[str, pa.Column] = {}
    for c in columns:
        checks: list[pa.Check] = []
        if c.is_numeric and (c.min is not None or c.max is not None):
            checks.append(_range_check(c))
        if c.type == "category" and not c.maps_unknown:
            allowed = list(c.categories)
            checks.append(pa.Check(lambda s, a=allowed: s.isin(a), name="category", ignore_na=True))
        if c.type in ("string", "category"):
            checks.append(pa.Check(lambda s: ~s.str.match(FORMULA_PATTERN).fillna(False),
                                   name="formula", ignore_na=True))
            if c.role != "id":  # an id is judged by id_characters
                checks.append(pa.Check(  # a formula is named as such, not twice
                    lambda s: ~(s.str.contains(CONTROL_PATTERN) & ~s.str.match(FORMULA_PATTERN)).fillna(False),
                    name="control", ignore_na=True))
        if c.role == "id":
            checks.append(pa.Check(lambda s: ~s.astype(str).str.contains(ID_FORBIDDEN, regex=True),
                                   name="id_characters", ignore_na=True))
        if c.type == "string" and c.max_length:
            n = int(c.max_length)
            checks.append(pa.Check(lambda s, n=n: s.str.len() <= n, name="max_length", ignore_na=True))
        cols[c.name] = pa.Column(None, checks, nullable=c.nullable, coerce=False)
    return pa.DataFrameSchema(cols, strict=False)


def _range_check(c: ColumnSpec) -> pa.Check:
    lo = float("-inf") if c.min is None else c.min
    hi = float("inf") if c.max is None else c.max
    return pa.Check(lambda s: (s >= lo) & (s <= hi), name="in_range", ignore_na=True)


def unknown_codes(read: ReadColumn, c: ColumnSpec) -> np.ndarray:
    """Cells of a category column holding a code that is not declared (blanks are not)."""
    if c.type != "category":
        return np.zeros(len(read.values), dtype=bool)
    if read.unknown is None:
        read.unknown = ~read.blank & ~read.values.isin(list(c.categories)).to_numpy(dtype=bool)
    return read.unknown


def typed_column(read: ReadColumn, c: ColumnSpec, keep: np.ndarray) -> pd.Series:
    """Final typed values of the rows that passed every check.

    An undeclared code that the column's policy keeps becomes missing, or ``other``.
    """
    values = read.values[keep].reset_index(drop=True)
    if c.type == "integer":
        return values.round().astype("Int64")
    if c.type == "category":
        values = values.astype(object)
        unknown = unknown_codes(read, c)[keep] if c.maps_unknown else None
        if unknown is not None and unknown.any():  # a policy that keeps the row
            values = values.where(~unknown, c.other if c.on_unknown == "other" else None)
        return pd.Series(pd.Categorical(values, categories=list(c.categories)))
    if c.type == "string":
        return values.astype(object)
    return values


def missing_column(c: ColumnSpec, rows: int) -> pd.Series:
    """An optional column a file left out: every value missing, typed as declared."""
    if c.type == "category":
        return pd.Series(pd.Categorical([None] * rows, categories=list(c.categories)))
    if c.type == "integer":
        return pd.Series(pd.array([pd.NA] * rows, dtype="Int64"))
    if c.type == "float":
        return pd.Series(np.full(rows, np.nan))
    if c.type == "date":
        return pd.Series(pd.NaT, index=range(rows), dtype="datetime64[us]")
    return pd.Series([None] * rows, dtype=object)


def mapped_values(read: ReadColumn, c: ColumnSpec, raw: pd.Series, keep: np.ndarray) -> pd.DataFrame:
    """Counts of the kept rows' cells read as something other than they say (:data:`MAPPED_COLUMNS`).

    Undeclared codes a policy kept (mapped to ``missing`` or the ``other`` category) and
    declared missing-value texts (mapped to ``missing``), by the cell as written.
    """
    parts = []
    if c.maps_unknown:
        parts.append((unknown_codes(read, c) & keep, c.unknown_maps_to))
    if read.token is not None:
        parts.append((read.token & keep, "missing"))
    frames = []
    for mask, target in parts:
        if mask.any():
            counts = as_text(raw)[mask].value_counts(sort=False)
            frames.append(pd.DataFrame({"column": c.name, "value": counts.index.astype(object),
                                        "mapped_to": target, "count": counts.to_numpy(np.int64)}))
    if not frames:
        return pd.DataFrame({k: pd.Series(dtype=object if k != "count" else np.int64)
                             for k in MAPPED_COLUMNS})
    return pd.concat(frames, ignore_index=True).sort_values(
        ["count", "value"], ascending=[False, True], kind="stable").reset_index(drop=True)
