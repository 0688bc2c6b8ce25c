"""Decided and approved applications per group of a segment or protected column, for the
adverse impact ratio (``finflow_core.lending.fairness``), overall or per batch or week.

A protected column is never a model input, so it has no column of its own: its value is read
from the application's cells as submitted (``applications.data``, JSON), in the database.

Counted by the database straight from ``applications`` (current decision state), published
batches only: a batch still loading or voided never counts. Only decided applications
(approved or declined) are counted: a case still pending or referred has no decision yet.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import JSON, Connection, case, cast, func, select

from finflow_core.lending.fairness import COLUMNS
from finflow_core.lending.terms import Status
from finflow_core.store.batch_queries import published
from finflow_core.store.lending_tables import applications

#: The group name of applications with no value in the segment column.
MISSING_GROUP = "(missing)"


def submitted_cell(conn: Connection, name: str) -> Any:
    """SQL: the cell ``name`` of each application as submitted (text; NULL when absent)."""
    data = applications.c.data
    if conn.dialect.name == "postgresql":
        return cast(data, JSON)[name].as_string()
    return func.json_extract(data, "$." + '"' + name.replace('"', '""') + '"')


def approval_counts(conn: Connection, key: Any, column: str, *, period: str | None = None) -> pd.DataFrame:
    """One row per group of ``key`` (a segment column such as ``applications.c.segment_1``, or
    :func:`submitted_cell`): the fairness module's :data:`~finflow_core.lending.fairness.COLUMNS`
    (``column`` names the segment), with a leading ``period`` (batch id or week start) when
    ``period`` is ``"batch"`` or ``"week"``."""
    a = applications.c
    by = {"batch": a.batch_id, "week": a.week_start}.get(period or "")
    keys = [key] if by is None else [by, key]
    q = (select(*keys, func.count().label("decided"),
                func.sum(case((a.status == Status.APPROVED, 1), else_=0)).label("approved"))
         .where(published(a.batch_id), a.status.in_((Status.APPROVED, Status.DECLINED)))
         .group_by(*keys).order_by(*keys))
    rows = [tuple(r) for r in conn.execute(q).all()]
    if by is None:
        rows = [("", *r) for r in rows]
    frame = pd.DataFrame([(str(p), column, MISSING_GROUP if g in (None, "") else str(g), int(d), int(n or 0))
                          for p, g, d, n in rows], columns=["period", *COLUMNS])
    frame = frame.astype({"decided": "int64", "approved": "int64"})
    return frame if by is not None else frame.drop(columns="period")


__all__ = ["MISSING_GROUP", "approval_counts", "submitted_cell"]
