"""Adopting rows written before FinFlow sealed them: one audited, explicit step, never implied.

A database upgraded to 0005 keeps its old rows with no seal, and FinFlow neither scores with
an unsealed model or strategy nor lets verify pass them. An admin who has checked the
installation (or restored it from a trusted backup) adopts them: every unsealed row is
sealed as it is now, and one ``legacy_rows_sealed`` entry records how many rows of each table,
the seal of each user, strategy, model version, officer's decision, proposal, experiment,
outcome file and outcome, and each batch's seal sums (of its applications and scores, and of
a test's arms and shadow scores). Decisions and outcomes are append-only: the entry keeps
their seals instead of the rows. The lifecycle's tables were sealed from revision 0011 on. It is trust on first use, written down: what was changed before adoption cannot
be told any more, and the trail says from when on it can.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, select, update

from finflow_core.store.audit_chain import append_audit, lock_chain
from finflow_core.store.engine import Store
from finflow_core.store.lending_tables import (
    applications,
    decisions,
    model_versions,
    proposals,
    scores,
    strategies,
)
from finflow_core.store.lifecycle_tables import (
    application_arms,
    experiments,
    outcome_files,
    outcomes,
    shadow_scores,
)
from finflow_core.store.seals import SPECS, SealSum, key_of, seal_ref, seal_rows
from finflow_core.store.tables import audit_log, users

PAGE = 20_000
ACTION = "legacy_rows_sealed"


@dataclass(frozen=True)
class Adoption:
    """What was adopted, per table, and the entry that records it (None: nothing to adopt)."""

    counts: dict[str, int] = field(default_factory=dict)
    seq: int | None = None


def adopt_legacy(store: Store, actor: str) -> Adoption:
    """Seal every unsealed row as it is now and record it (in one transaction)."""
    with store.begin() as conn:
        lock_chain(conn)
        counts: Counter[str] = Counter()
        refs: list[dict[str, Any]] = []
        for table, pk in ((users, "id"), (strategies, "id"), (model_versions, "version"),
                          (proposals, "id"), (experiments, "id"), (outcome_files, "id")):
            refs += _small(conn, table, pk, counts)
        kept = _kept_in_trail(conn)
        # decisions and outcomes refuse UPDATE: the trail keeps their seal instead
        refs += _append_only(conn, select(decisions).where(decisions.c.kind == "manual")
                             .where(decisions.c.seal.is_(None)), "decisions", kept, counts)
        refs += _append_only(conn, select(outcomes).where(outcomes.c.seal.is_(None)), "outcomes",
                             kept, counts)
        sums = _batches(conn, counts)
        for table in (application_arms, shadow_scores):
            _test_rows(conn, table, sums, counts)
        counts = +counts  # drop tables with nothing adopted
        if not counts:
            return Adoption()
        entry = append_audit(conn, actor, ACTION, "audit", "rows", {
            "tables": dict(counts), "batches": sums, "row_seals": refs,
            "note": "rows written before FinFlow sealed them, sealed as they were at this moment "
                    "(trust on first use): changes made to them before now cannot be told",
        })
    return Adoption(dict(counts), entry.seq)


def _kept_in_trail(conn: Connection) -> set[tuple[str, int]]:
    """(table, id) of officers' decisions and outcomes whose seal an entry already keeps
    (their case_decided entry, or an earlier adoption)."""
    rows = conn.execute(select(audit_log.c.details)
                        .where(audit_log.c.action.in_(("case_decided", ACTION))))
    kept = set()
    for (text,) in rows:
        details = json.loads(text)
        for ref in [details.get("row_seal") or {}, *(details.get("row_seals") or [])]:
            if isinstance(ref, dict) and ref.get("table") in ("decisions", "outcomes"):
                kept.add((str(ref["table"]), int(ref["row"])))
    return kept


def _append_only(conn: Connection, query: Any, table: str, kept: set[tuple[str, int]],
                 counts: Counter[str]) -> list[dict[str, Any]]:
    """The seals of unsealed rows of an append-only table that no entry keeps yet, as refs."""
    rows = [dict(r) for r in conn.execute(query).mappings() if (table, int(r["id"])) not in kept]
    counts[table] += len(rows)
    return [seal_ref(table, row["id"], seal)["row_seal"]
            for row, seal in zip(rows, _seal(conn, table, rows), strict=True)]


def _seal(conn: Connection, table: str, rows: list[dict[str, Any]]) -> list[str]:
    columns = {c: [r[c] for r in rows] for c in SPECS[table].columns}
    return seal_rows(key_of(conn), table, columns, len(rows))


def _small(conn: Connection, table: Table, pk: str, counts: Counter[str]) -> list[dict[str, Any]]:
    rows = [dict(r) for r in conn.execute(select(table).where(table.c.seal.is_(None))).mappings()]
    refs = []
    for row, seal in zip(rows, _seal(conn, table.name, rows), strict=True):
        conn.execute(update(table).where(table.c[pk] == row[pk]).values(seal=seal))
        refs.append(seal_ref(table.name, row[pk], seal)["row_seal"])
    counts[table.name] += len(rows)
    return refs


def _test_rows(conn: Connection, table: Table, sums: dict[str, dict[str, Any]],
               counts: Counter[str]) -> None:
    """Seal a test's unsealed arms or shadow scores, batch by batch; add their new seal sums."""
    a, t = applications.c, table.c
    joined = table.join(applications, a.id == t.application_id)
    ids = list(conn.execute(select(a.batch_id).select_from(joined).where(t.seal.is_(None))
                            .distinct()).scalars())
    for bid in sorted(ids):
        total = SealSum()
        lo, hi = conn.execute(select(func.min(a.id), func.max(a.id)).where(a.batch_id == bid)).one()
        for start in range(int(lo), int(hi) + 1, PAGE):  # a range of application ids at a time
            page = [dict(r) for r in conn.execute(
                select(table).select_from(joined).where(a.batch_id == bid, t.application_id >= start,
                                                        t.application_id < start + PAGE)).mappings()]
            if not page:
                continue
            fresh = _seal(conn, table.name, page)
            todo = [{"k": r["application_id"], "e": r["experiment_id"], "new_seal": new}
                    for r, new in zip(page, fresh, strict=True) if r["seal"] is None]
            if todo:
                conn.execute(update(table).where(t.application_id == bindparam("k"),
                                                 t.experiment_id == bindparam("e"))
                             .values(seal=bindparam("new_seal")), todo)
            counts[table.name] += len(todo)
            total.add([r["seal"] or new for r, new in zip(page, fresh, strict=True)])
        sums.setdefault(bid, {})[table.name] = total.value()


def _batches(conn: Connection, counts: Counter[str]) -> dict[str, dict[str, Any]]:
    """Seal unsealed applications and scores, batch by batch; their new seal sums."""
    a, s = applications.c, scores.c
    ids = list(conn.execute(select(a.batch_id).where(a.seal.is_(None)).distinct()).scalars())
    sums: dict[str, dict[str, Any]] = {}
    for bid in sorted(ids):
        totals = {"applications": SealSum(), "scores": SealSum()}
        for table, key, batch_of in ((applications, a.id, a.batch_id), (scores, s.application_id,
                                     select(a.batch_id).where(a.id == s.application_id)
                                     .scalar_subquery())):
            last = -1
            while True:
                page = [dict(r) for r in conn.execute(
                    select(table).where(batch_of == bid, key > last).order_by(key).limit(PAGE))
                    .mappings()]
                if not page:
                    break
                last = page[-1][key.name]
                fresh = _seal(conn, table.name, page)
                todo = [{"k": r[key.name], "new_seal": new}
                        for r, new in zip(page, fresh, strict=True) if r["seal"] is None]
                if todo:
                    conn.execute(update(table).where(key == bindparam("k"))
                                 .values(seal=bindparam("new_seal")), todo)
                counts[table.name] += len(todo)
                totals[table.name].add([r["seal"] or new for r, new in zip(page, fresh, strict=True)])
        sums[bid] = {t: v.value() for t, v in totals.items()}
    return sums
