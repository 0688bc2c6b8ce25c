"""Decided and approved applications per group of a segment column, for the adverse impact
ratio (``finflow_core.lending.fairness``).

Counted by the database straight from ``applications`` (current decision state), published
batches only: a batch still loading or voided never counts. Only decided applications
(approved or declined) are counted: a case still pending or referred has no decision yet.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Connection, case, func, select

from finflow_core.lending.fairness import COLUMNS
from finflow_core.lending.terms import Status
from finflow_core.store.batch_queries import published
from finflow_core.store.lending_tables import applications

#: The group name of applications with no value in the segment column.
MISSING_GROUP = "(missing)"


def approval_counts(conn: Connection, segment_key: str, column: str) -> pd.DataFrame:
    """One row per group of ``segment_key`` (``segment_1``..``segment_3``): the fairness
    module's :data:`~finflow_core.lending.fairness.COLUMNS` (``column`` names the segment)."""
    a = applications.c
    key = a[segment_key]
    q = (select(key.label("group"), func.count().label("decided"),
                func.sum(case((a.status == Status.APPROVED, 1), else_=0)).label("approved"))
         .where(published(a.batch_id), a.status.in_((Status.APPROVED, Status.DECLINED)))
         .group_by(key).order_by(key))
    rows = conn.execute(q).all()
    frame = pd.DataFrame([(column, MISSING_GROUP if g in (None, "") else str(g), int(d), int(n or 0))
                          for g, d, n in rows], columns=list(COLUMNS))
    return frame.astype({"decided": "int64", "approved": "int64"})


__all__ = ["MISSING_GROUP", "approval_counts"]
