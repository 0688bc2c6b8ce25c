"""Primary keys taken ahead of an insert (a seal covers its row's id, and an application
points at its automatic decision, so ids are known before the rows are written)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select, text


def allocate_ids(conn: Connection, table: Any, n: int) -> list[int]:
    """``n`` fresh primary keys for ``table``, taken inside the caller's write transaction.

    PostgreSQL hands them out from the table's sequence (safe under concurrency); on SQLite
    the transaction holds the database's only write lock, so max(id) + 1 onwards is free.
    """
    if n == 0:
        return []
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.name, "n": n},
        )
        return [int(r[0]) for r in rows]
    start = next_free_id(conn, table)
    return list(range(start, start + n))


def next_free_id(conn: Connection, table: Any) -> int:
    """max(id) + 1 of ``table``: on SQLite, under a write transaction, the first id that
    this transaction may take (PostgreSQL uses sequences, see :func:`allocate_ids`)."""
    return int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()) + 1
