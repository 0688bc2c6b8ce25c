"""Bulk inserts: plain tuples straight to the driver, COPY on PostgreSQL.

A weekly batch writes hundreds of thousands of rows; going through SQLAlchemy's per-row
parameter processing costs more than the database's own work, so large inserts hand
plain Python values to the DBAPI cursor (inside the caller's transaction, as usual):
one ``executemany`` on SQLite (the driver releases the GIL while SQLite works, so a writer
thread overlaps the scoring of the next chunk), ``COPY ... FROM STDIN`` through psycopg's
``cursor.copy`` on PostgreSQL. Columns are converted to Python values a whole column at a
time (``tolist``), never value by value unless the column holds missing values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Table

PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s", "numeric": ":{i}"}


def bulk_insert(conn: Connection, table: Table, columns: Mapping[str, Any], rows: int) -> None:
    """Insert ``rows`` rows given column-wise (arrays, lists, Series, or one scalar for all)."""
    if rows == 0:
        return
    names = list(columns)
    unknown = [n for n in names if n not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {unknown}")
    values = [_python_values(columns[n], rows) for n in names]
    prep = conn.dialect.identifier_preparer
    quoted = ", ".join(prep.quote(n) for n in names)
    target = prep.format_table(table)
    if conn.dialect.name == "postgresql":
        _copy(conn, f"COPY {target} ({quoted}) FROM STDIN", values)
        return
    style = conn.dialect.paramstyle
    marks = ", ".join(PLACEHOLDER.get(style, "?").format(i=i + 1) for i in range(len(names)))
    conn.exec_driver_sql(f"INSERT INTO {target} ({quoted}) VALUES ({marks})",
                         list(zip(*values, strict=True)))


def _copy(conn: Connection, statement: str, values: list[Sequence[Any]]) -> None:
    """PostgreSQL's COPY inside the caller's transaction (psycopg 3)."""
    raw = conn.connection.dbapi_connection
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        write = copy.write_row
        for row in zip(*values, strict=True):
            write(row)


def _python_values(column: Any, rows: int) -> Sequence[Any]:
    """Plain Python values (None for missing) for one column."""
    if isinstance(column, str | int | float | bool) or column is None:
        return [column] * rows
    if isinstance(column, list):
        if len(column) != rows:
            raise ValueError(f"column has {len(column)} values for {rows} rows")
        if set(map(type, column)) <= {str}:  # the common case: text made for storing
            return column
        column = np.asarray(column, dtype=object)
    if isinstance(column, pd.Series):
        column = column.to_numpy(dtype=object) if column.dtype == object else column.to_numpy()
    arr = np.asarray(column)
    if len(arr) != rows:
        raise ValueError(f"column has {len(arr)} values for {rows} rows")
    if arr.dtype.kind == "f":
        out = arr.tolist()
        missing = np.isnan(arr)
        if missing.any():  # NaN -> NULL
            for i in np.flatnonzero(missing).tolist():
                out[i] = None
        return out
    if arr.dtype.kind == "O":
        missing = pd.isna(arr)
        out = arr.tolist()
        if missing.any():
            for i in np.flatnonzero(missing).tolist():
                out[i] = None
        # one pass at C speed over the types present; convert only if some need it, each
        # distinct value once (a column of enum members holds a handful of them)
        kinds = {t for t in set(map(type, out)) if issubclass(t, _CONVERT)}
        if kinds:
            plain = {v: _native(v) for v in set(out) if type(v) in kinds}
            return [plain[v] if type(v) in kinds else v for v in out]
        return out
    return arr.tolist()


_CONVERT = (np.generic, Enum)


def _native(v: Any) -> Any:
    """numpy scalars as Python values, StrEnum members as their text (drivers see plain str)."""
    if isinstance(v, np.generic):
        return v.item()
    return v.value if isinstance(v, Enum) else v
