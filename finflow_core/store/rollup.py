"""Keeping the portfolio roll-ups in step with the published applications.

A batch's applications are added up in memory while it loads (:class:`RollupAccumulator`)
and written when it is published, in the same transaction; a decision moves one
application between groups in its own transaction; voiding a batch deletes its groups. So
the roll-ups always equal a GROUP BY over the applications of published batches
(``check_rollups`` proves it). Expected profit is NULL when nothing was priced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Integer, Table, case, func, select
from sqlalchemy.dialects import postgresql, sqlite

from finflow_core.lending.terms import BatchState
from finflow_core.store.lending_tables import (
    applications,
    batches,
    portfolio_rollup,
    probability_rollup,
)

HIST_BINS = 20
PORTFOLIO_KEYS = ("week_start", "batch_id", "band", "status", "kind", "segment_1", "segment_2", "segment_3")
PROBABILITY_KEYS = ("week_start", "batch_id", "segment_1", "segment_2", "segment_3", "bin")


def probability_bin(p: Any) -> Any:
    """Twentieths of probability; 1.0 falls in the last bin."""
    return (pd.Series(p, copy=False).astype(float) * HIST_BINS).astype(int).clip(0, HIST_BINS - 1)


def _groups(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(portfolio groups, probability histogram) of applications given as table columns."""
    df = rows.copy()
    df["kind"] = df["decided_kind"].fillna("pending")
    for s in ("segment_1", "segment_2", "segment_3"):
        df[s] = df[s].fillna("").astype(str)
    df["expected_profit"] = pd.to_numeric(df["expected_profit"], errors="coerce")
    grouped = df.groupby(list(PORTFOLIO_KEYS), dropna=False)
    agg = grouped.agg(n=("amount", "size"), amount=("amount", "sum")).reset_index()
    # NaN (unpriced) profits stay unknown: a group with no priced row sums to NULL
    agg["expected_profit"] = grouped["expected_profit"].sum(min_count=1).to_numpy()
    df["bin"] = probability_bin(df["probability"]).to_numpy()
    hist = df.groupby(list(PROBABILITY_KEYS), dropna=False).size().rename("n").reset_index()
    return agg, hist


def add_applications(conn: Connection, rows: pd.DataFrame) -> None:
    """Add applications (columns as in the applications table) to the roll-ups now."""
    if rows.empty:
        return
    acc = RollupAccumulator()
    acc.add(rows)
    acc.write(conn)


class RollupAccumulator:
    """A loading batch's roll-up groups, added up in memory chunk by chunk and written once
    when the batch is published (so a loading batch is never in the portfolio)."""

    def __init__(self) -> None:
        self.portfolio: dict[tuple[Any, ...], list[Any]] = {}
        self.probability: dict[tuple[Any, ...], int] = {}

    def add(self, rows: pd.DataFrame) -> None:
        if rows.empty:
            return
        agg, hist = _groups(rows)
        for r in agg.itertuples(index=False):
            key = tuple(getattr(r, k) for k in PORTFOLIO_KEYS)
            profit = None if pd.isna(r.expected_profit) else float(r.expected_profit)
            got = self.portfolio.get(key)
            if got is None:
                self.portfolio[key] = [int(r.n), float(r.amount), profit]
            else:
                got[0] += int(r.n)
                got[1] += float(r.amount)
                got[2] = profit if got[2] is None else got[2] + (profit or 0.0)
        for r in hist.itertuples(index=False):
            key = tuple(getattr(r, k) for k in PROBABILITY_KEYS)
            self.probability[key] = self.probability.get(key, 0) + int(r.n)

    def write(self, conn: Connection) -> None:
        """Upsert the groups (a few thousand rows at most) in the caller's transaction."""
        if self.portfolio:
            frame = pd.DataFrame([(*k, *v) for k, v in self.portfolio.items()],
                                 columns=[*PORTFOLIO_KEYS, "n", "amount", "expected_profit"])
            _upsert(conn, portfolio_rollup, frame, PORTFOLIO_KEYS, ("n", "amount", "expected_profit"))
        if self.probability:
            frame = pd.DataFrame([(*k, v) for k, v in self.probability.items()],
                                 columns=[*PROBABILITY_KEYS, "n"])
            _upsert(conn, probability_rollup, frame, PROBABILITY_KEYS, ("n",))


def move_application(conn: Connection, before: Any, status: str, kind: str, expected_profit: float) -> None:
    """One application changed status: take it out of its old group and into its new one."""
    base = {
        "week_start": before.week_start, "batch_id": before.batch_id, "band": before.band,
        "segment_1": before.segment_1 or "", "segment_2": before.segment_2 or "",
        "segment_3": before.segment_3 or "",
    }
    old = {**base, "status": before.status, "kind": before.decided_kind or "pending",
           "n": -1, "amount": -float(before.amount), "expected_profit": _neg(before.expected_profit)}
    new = {**base, "status": status, "kind": kind, "n": 1, "amount": float(before.amount),
           "expected_profit": _known(expected_profit)}
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
    records = [{k: _plain(v) for k, v in r.items()} for r in frame.astype(object).to_dict("records")]
    records.sort(key=lambda r: tuple(r[k] for k in keys))
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: table.c[c] + stmt.excluded[c] for c in adds}
    )
    conn.execute(stmt, records)


def published(batch_id: Any) -> Any:
    """``batch_id`` belongs to a published batch (loading and voided ones are not counted)."""
    return batch_id.in_(select(batches.c.id).where(batches.c.state == BatchState.PUBLISHED))


def check_rollups(conn: Connection) -> list[str]:
    """Differences between the roll-ups (portfolio and probability) and a fresh GROUP BY of the
    published applications (empty = in step)."""
    a = applications.c
    kind = func.coalesce(a.decided_kind, "pending")
    segs = [func.coalesce(a.segment_1, ""), func.coalesce(a.segment_2, ""), func.coalesce(a.segment_3, "")]
    dims = [a.week_start, a.batch_id, a.band, a.status, kind, *segs]

    def figures(r: Any) -> tuple[int, float, float | None]:
        return int(r[8]), round(float(r[9]), 2), None if r[10] is None else round(float(r[10]), 2)

    fresh = {tuple(r[:8]): figures(r) for r in conn.execute(
        select(*dims, func.count(), func.sum(a.amount), func.sum(a.expected_profit))
        .where(published(a.batch_id)).group_by(*dims))}
    p = portfolio_rollup.c
    stored = {tuple(r[:8]): figures(r) for r in conn.execute(
        select(*[p[k] for k in PORTFOLIO_KEYS], p.n, p.amount, p.expected_profit)
        .where(p.n != 0).where(published(p.batch_id)))}
    problems = []
    for key in sorted(set(fresh) | set(stored)):
        f, s = fresh.get(key), stored.get(key)
        if f is None or s is None or f[0] != s[0] or abs(f[1] - s[1]) > 0.05 or not _close(f[2], s[2]):
            problems.append(f"{key}: applications {f}, roll-up {s}")
    return problems + _check_probability_rollup(conn)


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 0.05


def _probability_bin_sql(conn: Connection) -> Any:
    """:func:`probability_bin` in SQL: floor(p * 20), 1.0 in the last bin."""
    scaled = applications.c.probability * HIST_BINS
    raw = (func.floor(scaled) if conn.dialect.name == "postgresql" else scaled).cast(Integer)
    return case((raw > HIST_BINS - 1, HIST_BINS - 1), (raw < 0, 0), else_=raw)


def _check_probability_rollup(conn: Connection) -> list[str]:
    a, h = applications.c, probability_rollup.c
    segs = [func.coalesce(a.segment_1, ""), func.coalesce(a.segment_2, ""), func.coalesce(a.segment_3, "")]
    dims = [a.week_start, a.batch_id, *segs, _probability_bin_sql(conn)]
    fresh = {tuple(r[:6]): int(r[6]) for r in conn.execute(
        select(*dims, func.count()).where(published(a.batch_id)).group_by(*dims))}
    stored = {tuple(r[:6]): int(r[6]) for r in conn.execute(
        select(*[h[k] for k in PROBABILITY_KEYS], h.n).where(h.n != 0).where(published(h.batch_id)))}
    return [f"probability {key}: applications {fresh.get(key)}, roll-up {stored.get(key)}"
            for key in sorted(set(fresh) | set(stored)) if fresh.get(key) != stored.get(key)]


def _plain(v: Any) -> Any:
    v = v.item() if hasattr(v, "item") else v
    return None if isinstance(v, float) and v != v else v


def _known(v: Any) -> float | None:
    return None if v is None or v != v else float(v)


def _neg(v: Any) -> float | None:
    known = _known(v)
    return None if known is None else -known
