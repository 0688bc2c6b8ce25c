"""Verify the model lifecycle's sealed rows, and name each row that differs.

* proposals (four eyes), experiments and outcome files: like users, each row's seal must
  match and equal the one its latest audit event recorded (``check_sealed``);
* a split's arms and a shadow test's scores: like applications, each row's seal, and per
  batch the :class:`~finflow_core.store.seals.SealSum` its ``batch_scored`` entry recorded
  (a deleted row is named by its application: a test covers every application of a batch);
* outcomes: each row's seal, and per outcome file the seal sum and the ids its
  ``outcomes_loaded`` entry recorded (a deleted outcome is named by its id). Outcomes from
  before sealing are append-only, so their adoption's entry keeps their seals.

Rows are read page by page and sealed column-wise, like the lending tables.
"""

from __future__ import annotations

import hmac
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Table, exists, func, select

from finflow_core.security.keys import InstallationKey
from finflow_core.store.lending_tables import applications, batches, proposals
from finflow_core.store.lifecycle_tables import (
    application_arms,
    experiments,
    outcome_files,
    outcomes,
    shadow_scores,
)
from finflow_core.store.seals import SPECS, SealSum, seal_rows
from finflow_core.store.trail_record import Finding, Recorded, TrailRecord
from finflow_core.store.verify_batches import PAGE, Findings, _sealed
from finflow_core.store.verify_records import check_sealed

#: a test's table -> the key of its experiment in a batch_scored entry's ``experiments``
TEST_TABLES: tuple[tuple[Table, str], ...] = ((application_arms, "split"), (shadow_scores, "shadow"))


def check_lifecycle(conn: Connection, key: InstallationKey,
                    record: TrailRecord) -> tuple[list[Finding], dict[str, int]]:
    """Findings for the lifecycle's tables, and rows checked per table."""
    found: list[Finding] = []
    counts: dict[str, int] = {}
    for table, label in ((proposals, _proposal), (experiments, _experiment),
                         (outcome_files, _outcome_file)):
        rows = conn.execute(select(table).order_by(table.c.id)).mappings()
        more, counts[table.name] = check_sealed(key, table.name, rows, "id", label, record)
        found += more
    out = Findings()
    for table, kind in TEST_TABLES:
        counts[table.name] = _check_test_rows(conn, key, record, table, kind, out)
    counts["outcomes"] = _check_outcomes(conn, key, record, out)
    return found + out.done(), counts


def _proposal(r: Mapping[str, Any]) -> str:
    return (f"{r['id']} (application {r['application_id']}, {r['outcome']} proposed by "
            f"{r['proposed_by']}, {r['status']})")


def _experiment(r: Mapping[str, Any]) -> str:
    state = "running" if r["stopped_at"] is None else "stopped"
    return f"{r['id']} ({r['kind']} test of {r['challenger_version']}, {state})"


def _outcome_file(r: Mapping[str, Any]) -> str:
    return f"{r['id']} ({r['file_name']}, {r['rows']} rows)"


# -- arms and shadow scores, batch by batch ---------------------------------------------------

def _check_test_rows(conn: Connection, key: InstallationKey, record: TrailRecord, table: Table,
                     kind: str, out: Findings) -> int:
    """Every stored row of a test's table, and each batch's against its entry; rows checked."""
    name = table.name
    stored = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    if not stored and not any(_recorded(record, bid, name)[0] for bid in
                              {*record.batch_scored, *record.adopted_batches}):
        return 0  # no test ever ran (the usual case): nothing to read
    a = applications.c
    seen = 0
    for bid in conn.execute(select(batches.c.id).order_by(batches.c.uploaded_at)).scalars():
        lo, hi = conn.execute(select(func.min(a.id), func.max(a.id))
                              .where(a.batch_id == bid)).one()
        seen += _check_batch_rows(conn, key, record, table, kind, str(bid), lo, hi, out)
    if seen < stored:  # rows of no stored application (inserted with foreign keys off)
        t = table.c
        lost = select(t.application_id).where(~exists().where(a.id == t.application_id))
        for app_id in conn.execute(lost).scalars():
            out.add("-", name, f"application {app_id}", "unrecorded", "belongs to no stored "
                    "application: it was inserted outside FinFlow")
    return stored


def _recorded(record: TrailRecord, bid: str, table: str) -> tuple[dict[str, Any] | None, int]:
    """The seal sum the trail recorded for a batch's rows of ``table``, and the entry's seq."""
    scored = record.batch_scored.get(bid)
    want = ((scored.details.get("seals") or {}).get(table)) if scored else None
    if want is not None:
        return want, scored.seq  # type: ignore[union-attr]
    adopted = record.adopted_batches.get(bid)
    if adopted is not None and adopted.details.get(table) is not None:
        return adopted.details[table], adopted.seq
    return None, 0


def _check_batch_rows(conn: Connection, key: InstallationKey, record: TrailRecord, table: Table,
                      kind: str, bid: str, lo: int | None, hi: int | None, out: Findings) -> int:
    if lo is None or hi is None:
        rows_seen, total, named = 0, SealSum(), 0
    else:
        rows_seen, total, named = _batch_pages(conn, key, table, bid, int(lo), int(hi), out)
    name = table.name
    want, seq = _recorded(record, bid, name)
    if want is None:
        if rows_seen > named:
            out.add(bid, name, f"batch {bid}", "unrecorded", f"{rows_seen - named} sealed row(s) "
                    "stored, but no audit entry of the batch records any: they were copied in "
                    "from elsewhere, or the entries that wrote them were deleted")
        return rows_seen
    got = total.value()
    if got == want:
        return rows_seen
    missing = _without_row(conn, record.batch_scored.get(bid), table, kind, bid)
    for r in missing:
        out.add(bid, name, f"application {r.id} (batch {bid} row {r.row_number}, "
                f"{r.external_id})", "missing", f"the batch ran under a {kind} test (audit entry "
                f"{seq}), but the application has no {name} row: it was deleted")
    if not missing and not named:
        out.add(bid, name, f"batch {bid}", "missing", f"{got['n']} rows stored, audit entry {seq} "
                f"recorded {want.get('n')} (or others): rows were deleted, or replaced by rows "
                "from elsewhere")
    return rows_seen


def _batch_pages(conn: Connection, key: InstallationKey, table: Table, bid: str, lo: int, hi: int,
                 out: Findings) -> tuple[int, SealSum, int]:
    """Rows of the batch's applications (an id range a page at a time): how many, their seal
    sum, and how many were named here (unsealed or changed)."""
    t, a = table.c, applications.c
    columns = SPECS[table.name].columns
    query = (select(table, a.batch_id.label("a_batch"), a.row_number.label("a_row"),
                    a.external_id.label("a_external"))
             .select_from(table.join(applications, a.id == t.application_id))
             .order_by(t.application_id))
    n, named, total = 0, 0, SealSum()
    for start in range(lo, hi + 1, PAGE):
        page = [r for r in conn.execute(query.where(t.application_id >= start,
                                                    t.application_id < start + PAGE)).mappings()
                if r["a_batch"] == bid]
        if not page:
            continue
        n += len(page)
        total.add([r["seal"] for r in page])
        wants = seal_rows(key, table.name, {c: [r[c] for r in page] for c in columns}, len(page))
        for r, want in zip(page, wants, strict=True):
            label = (f"application {r['application_id']} (batch {bid} row {r['a_row']}, "
                     f"{r['a_external']}, experiment {r['experiment_id']})")
            if not _sealed(out, bid, table.name, label, r["seal"], want):
                named += 1
    return n, total, named


def _without_row(conn: Connection, scored: Recorded | None, table: Table, kind: str,
                 bid: str) -> list[Any]:
    """The batch's applications without a row of the test its entry names (none named: [])."""
    test = ((scored.details.get("experiments") or {}).get(kind) or {}) if scored else {}
    experiment = test.get("experiment_id")
    if experiment is None:
        return []
    a, t = applications.c, table.c
    has = exists().where(t.application_id == a.id, t.experiment_id == int(experiment))
    return list(conn.execute(select(a.id, a.row_number, a.external_id)
                             .where(a.batch_id == bid, ~has).order_by(a.id)))


# -- outcomes, file by file -------------------------------------------------------------------

def _check_outcomes(conn: Connection, key: InstallationKey, record: TrailRecord,
                    out: Findings) -> int:
    o = outcomes.c
    columns = SPECS["outcomes"].columns
    sums: dict[int, SealSum] = defaultdict(SealSum)
    named: Counter[int] = Counter()
    kept_seen: set[str] = set()
    n, last = 0, 0
    query = select(outcomes).order_by(o.id).limit(PAGE)
    while page := conn.execute(query.where(o.id > last)).mappings().all():
        last = int(page[-1]["id"])
        n += len(page)
        wants = seal_rows(key, "outcomes", {c: [r[c] for r in page] for c in columns}, len(page))
        by_file: dict[int, list[str | None]] = defaultdict(list)
        for r, want in zip(page, wants, strict=True):
            file_id = int(r["file_id"])
            group, name = f"file {file_id}", f"{r['id']} (application {r['application_id']}, " \
                f"outcome file {file_id})"
            kept = record.seals.get(("outcomes", str(r["id"])))
            if kept is not None:
                kept_seen.add(str(r["id"]))
            # an adopted row's seal is the one the trail keeps (the row refuses UPDATE)
            by_file[file_id].append(r["seal"] if r["seal"] is not None or kept is None else kept[1])
            if r["seal"] is None and kept is not None:  # from before sealing: the trail keeps it
                if not hmac.compare_digest(kept[1], want):
                    named[file_id] += 1
                    out.add(group, "outcomes", name, "changed", "was changed outside FinFlow: it "
                            f"no longer matches the seal audit entry {kept[0]} recorded")
            elif not _sealed(out, group, "outcomes", name, r["seal"], want):
                named[file_id] += 1
        for file_id, file_seals in by_file.items():
            sums[file_id].add(file_seals)
    for file_id_text, event in sorted(record.outcomes_loaded.items()):
        want = (event.details.get("seals") or {}).get("outcomes")
        file_id = int(file_id_text)
        if want is None or sums.get(file_id, SealSum()).value() == want:
            continue  # loaded before outcomes were sealed, or all there
        missing = _missing_ids(conn, event.details.get("outcome_ids") or [])
        for outcome_id in missing:
            out.add(f"file {file_id}", "outcomes", f"{outcome_id} (outcome file {file_id})",
                    "missing", f"recorded by audit entry {event.seq} but no longer stored: it "
                    "was deleted")
        if not missing and not named[file_id]:
            got = sums.get(file_id, SealSum()).value()
            out.add(f"file {file_id}", "outcomes", f"file {file_id}", "missing", f"{got['n']} "
                    f"outcomes stored, audit entry {event.seq} recorded {want.get('n')} (or "
                    "others): outcomes were deleted, or replaced by rows from elsewhere")
    for (table, row_id), (seq, _) in sorted(record.seals.items()):
        if table == "outcomes" and row_id not in kept_seen:
            out.add("legacy", "outcomes", row_id, "missing", f"recorded by audit entry {seq} but "
                    "no longer stored: it was deleted")
    return n


def _missing_ids(conn: Connection, runs: list[list[int]]) -> list[int]:
    """Ids of the recorded runs that are no longer stored."""
    o = outcomes.c
    missing: list[int] = []
    for lo, hi in runs:
        stored = set(conn.execute(select(o.id).where(o.id.between(int(lo), int(hi)))).scalars())
        missing += [i for i in range(int(lo), int(hi) + 1) if i not in stored]
    return missing
