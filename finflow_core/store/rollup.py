"""Keeping the portfolio roll-ups in step with applications, in the writer's transaction.

Every write that adds applications or changes an application's status goes through here,
so the roll-ups always equal a GROUP BY over the applications (``check_rollups`` proves it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Integer, Table, case, func, select
from sqlalchemy.dialects import postgresql, sqlite

from finflow_core.store.lending_tables import applications, portfolio_rollup, probability_rollup

HIST_BINS = 20
PORTFOLIO_KEYS = ("week_start", "batch_id", "band", "status", "kind", "segment_1", "segment_2", "segment_3")
PROBABILITY_KEYS = ("week_start", "batch_id", "segment_1", "segment_2", "segment_3", "bin")


def probability_bin(p: Any) -> Any:
    """Twentieths of probability; 1.0 falls in the last bin."""
    return (pd.Series(p, copy=False).astype(float) * HIST_BINS).astype(int).clip(0, HIST_BINS - 1)


def add_applications(conn: Connection, rows: pd.DataFrame) -> None:
    """Add newly stored applications (columns as in the applications table) to the roll-ups."""
    if rows.empty:
        return
    df = rows.copy()
    df["kind"] = df["decided_kind"].fillna("pending")
    for s in ("segment_1", "segment_2", "segment_3"):
        df[s] = df[s].fillna("").astype(str)
    agg = (df.groupby(list(PORTFOLIO_KEYS), dropna=False)
           .agg(n=("amount", "size"), amount=("amount", "sum"), expected_profit=("expected_profit", "sum"))
           .reset_index())
    _upsert(conn, portfolio_rollup, agg, PORTFOLIO_KEYS, ("n", "amount", "expected_profit"))
    df["bin"] = probability_bin(df["probability"]).to_numpy()
    hist = df.groupby(list(PROBABILITY_KEYS), dropna=False).size().rename("n").reset_index()
    _upsert(conn, probability_rollup, hist, PROBABILITY_KEYS, ("n",))


def move_application(conn: Connection, before: Any, status: str, kind: str, expected_profit: float) -> None:
    """One application changed status: take it out of its old group and into its new one."""
    base = {
        "week_start": before.week_start, "batch_id": before.batch_id, "band": before.band,
        "segment_1": before.segment_1 or "", "segment_2": before.segment_2 or "",
        "segment_3": before.segment_3 or "",
    }
    old = {**base, "status": before.status, "kind": before.decided_kind or "pending",
           "n": -1, "amount": -float(before.amount), "expected_profit": -float(before.expected_profit)}
    new = {**base, "status": status, "kind": kind, "n": 1, "amount": float(before.amount),
           "expected_profit": float(expected_profit)}
    _upsert(conn, portfolio_rollup, pd.DataFrame([old, new]), PORTFOLIO_KEYS, ("n", "amount", "expected_profit"))


def _upsert(conn: Connection, table: Table, frame: pd.DataFrame, keys: Sequence[str], adds: Sequence[str]) -> None:
    """INSERT ... ON CONFLICT DO UPDATE SET x = x + excluded.x (SQLite and PostgreSQL).

    Rows are written in key order, so concurrent writers lock roll-up rows in one order: two
    decisions moving applications between the same two groups in opposite directions would
    otherwise deadlock on PostgreSQL.
    """
    dialect = conn.dialect.name
    insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(dialect)
    if insert is None:
        raise NotImplementedError(f"roll-ups need SQLite or PostgreSQL, not {dialect}")
    records = [{k: _plain(v) for k, v in r.items()} for r in frame.to_dict("records")]
    records.sort(key=lambda r: tuple(r[k] for k in keys))
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: table.c[c] + stmt.excluded[c] for c in adds}
    )
    conn.execute(stmt, records)


def check_rollups(conn: Connection) -> list[str]:
    """Differences between the roll-ups (portfolio and probability) and a fresh GROUP BY of the
    applications (empty = in step)."""
    a = applications.c
    kind = func.coalesce(a.decided_kind, "pending")
    segs = [func.coalesce(a.segment_1, ""), func.coalesce(a.segment_2, ""), func.coalesce(a.segment_3, "")]
    dims = [a.week_start, a.batch_id, a.band, a.status, kind, *segs]
    fresh = {tuple(r[:8]): (int(r[8]), round(float(r[9]), 2), round(float(r[10]), 2)) for r in conn.execute(
        select(*dims, func.count(), func.sum(a.amount), func.sum(a.expected_profit)).group_by(*dims))}
    stored = {tuple(r[:8]): (int(r[8]), round(float(r[9]), 2), round(float(r[10]), 2)) for r in conn.execute(
        select(*[portfolio_rollup.c[k] for k in PORTFOLIO_KEYS], portfolio_rollup.c.n,
               portfolio_rollup.c.amount, portfolio_rollup.c.expected_profit)
        .where(portfolio_rollup.c.n != 0))}
    problems = []
    for key in sorted(set(fresh) | set(stored)):
        f, s = fresh.get(key), stored.get(key)
        if f is None or s is None or f[0] != s[0] or abs(f[1] - s[1]) > 0.05 or abs(f[2] - s[2]) > 0.05:
            problems.append(f"{key}: applications {f}, roll-up {s}")
    return problems + _check_probability_rollup(conn)


def _probability_bin_sql(conn: Connection) -> Any:
    """:func:`probability_bin` in SQL: floor(p * 20), 1.0 in the last bin."""
    scaled = applications.c.probability * HIST_BINS
    raw = (func.floor(scaled) if conn.dialect.name == "postgresql" else scaled).cast(Integer)
    return case((raw > HIST_BINS - 1, HIST_BINS - 1), (raw < 0, 0), else_=raw)


def _check_probability_rollup(conn: Connection) -> list[str]:
    a, h = applications.c, probability_rollup.c
    segs = [func.coalesce(a.segment_1, ""), func.coalesce(a.segment_2, ""), func.coalesce(a.segment_3, "")]
    dims = [a.week_start, a.batch_id, *segs, _probability_bin_sql(conn)]
    fresh = {tuple(r[:6]): int(r[6]) for r in conn.execute(select(*dims, func.count()).group_by(*dims))}
    stored = {tuple(r[:6]): int(r[6]) for r in conn.execute(
        select(*[h[k] for k in PROBABILITY_KEYS], h.n).where(h.n != 0))}
    return [f"probability {key}: applications {fresh.get(key)}, roll-up {stored.get(key)}"
            for key in sorted(set(fresh) | set(stored)) if fresh.get(key) != stored.get(key)]


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v
