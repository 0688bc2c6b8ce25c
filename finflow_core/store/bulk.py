"""Bulk inserts: one driver-level executemany of plain tuples per table.

A weekly batch writes hundreds of thousands of rows; going through SQLAlchemy's per-row
parameter processing costs more than the database's own work, so large inserts hand
tuples straight to the DBAPI cursor (inside the caller's transaction, as usual).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    style = conn.dialect.paramstyle
    marks = ", ".join(PLACEHOLDER.get(style, "?").format(i=i + 1) for i in range(len(names)))
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(n) for n in names)
    sql = f"INSERT INTO {conn.dialect.identifier_preparer.format_table(table)} ({quoted}) VALUES ({marks})"
    conn.exec_driver_sql(sql, list(zip(*values, strict=True)))


def _python_values(column: Any, rows: int) -> Sequence[Any]:
    """Plain Python values (None for missing) for one column."""
    if isinstance(column, str | int | float | bool) or column is None:
        return [column] * rows
    if isinstance(column, pd.Series):
        column = column.to_numpy(dtype=object) if column.dtype == object else column.to_numpy()
    arr = np.asarray(column)
    if len(arr) != rows:
        raise ValueError(f"column has {len(arr)} values for {rows} rows")
    if arr.dtype.kind == "f":
        return [None if v != v else v for v in arr.tolist()]  # NaN -> NULL
    if arr.dtype.kind == "O":
        return [None if (isinstance(v, float) and v != v) or v is pd.NA else _native(v) for v in arr]
    return arr.tolist()


def _native(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
