"""The queue's "largest first" page is served by the open-case amount index (SQLite).

That index covers open cases only: one over every application keyed by amount takes random
inserts and made storing a million applications 4-5x slower. The queue's query must say
which statuses it reads, or the planner cannot use a partial index and sorts every pending
case instead.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from store_helpers import OFFICER, BatchFiles, Lending

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures


def test_the_largest_first_queue_uses_the_open_case_amount_index(
    ffa_sqlite: Lending, batches_dir: BatchFiles
) -> None:
    ff = ffa_sqlite
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if "ORDER BY applications.amount DESC" in statement:
            seen.append((statement, params))

    event.listen(ff.store.engine, "before_cursor_execute", capture)
    try:
        page = ff.wb(OFFICER).review.queue(order="amount", limit=20)
    finally:
        event.remove(ff.store.engine, "before_cursor_execute", capture)
    assert page.rows and [r.amount for r in page.rows] == sorted((r.amount for r in page.rows), reverse=True)
    [(statement, params)] = seen
    with ff.store.engine.connect() as conn:
        plan = " ".join(str(r[3]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params))
    assert "ix_applications_queue_amount" in plan, plan
    with ff.store.engine.connect() as conn:
        [sql] = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = "
                                     "'ix_applications_queue_amount'").scalars()
    assert "WHERE status IN ('pending', 'referred')" in sql
