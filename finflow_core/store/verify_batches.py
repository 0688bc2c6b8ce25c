"""Verify every stored application, score and decision, and name each row that differs.

* applications and scores: each row's seal; each batch's seals must add up to the
  :class:`~finflow_core.store.seals.SealSum` its ``batch_scored`` entry recorded (a deleted
  row is named by its row number: every row of a file is stored or quarantined);
* an application's current state (probability, band, status, kind, expected profit, current
  decision) must follow from its sealed score and its latest decision;
* automatic decisions follow from their sealed score (outcome from the band, the model, the
  time, the decline reasons), and their count from the batch's entry;
* officers' decisions: each row's seal, equal to the one its ``case_decided`` entry recorded.

Rows are read page by page in id order and sealed column-wise, so a million applications
verify in seconds with bounded memory. Findings of one kind are listed up to
:data:`SHOWN` per batch, then counted.
"""

from __future__ import annotations

import hmac
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, exists, func, select

from finflow_core.lending.scoring import reason_texts
from finflow_core.lending.terms import AUTO_OUTCOME, STATUS_OF_OUTCOME, Outcome
from finflow_core.security.keys import InstallationKey
from finflow_core.store.lending_tables import (
    applications,
    batches,
    decisions,
    quarantine_rows,
    scores,
)
from finflow_core.store.seals import SealSum, seal_row, seal_rows
from finflow_core.store.trail_record import Finding, TrailRecord

PAGE = 20_000
SHOWN = 20
_SCORE = ("application_id", "model_version", "probability", "band", "ev_approve", "ev_review",
          "reasons", "scored_at", "seal")


@dataclass
class Findings:
    """Findings with at most :data:`SHOWN` of one (table, problem, batch); the rest counted."""

    items: list[Finding] = field(default_factory=list)
    hidden: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    _shown: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def add(self, batch: str, table: str, row: str, problem: str, message: str) -> None:
        group = (table, problem, batch)
        if self._shown[group] < SHOWN:
            self._shown[group] += 1
            self.items.append(Finding(table, row, problem, message))
        else:
            self.hidden[group] += 1

    def done(self) -> list[Finding]:
        more = [Finding(t, f"batch {b}", p, f"{n} more row(s) with the same problem ({p})")
                for (t, p, b), n in sorted(self.hidden.items())]
        return self.items + more


def check_lending(conn: Connection, key: InstallationKey, record: TrailRecord) -> tuple[list[Finding], dict[str, int]]:
    """Findings for applications, scores and decisions, and rows checked per table."""
    out, counts = Findings(), Counter[str]()
    batch_ids = list(conn.execute(select(batches.c.id).order_by(batches.c.uploaded_at)).scalars())
    for bid in batch_ids:
        _check_batch(conn, key, record, str(bid), out, counts)
    _check_auto(conn, record, out, counts)
    _check_manual(conn, key, record, out, counts)
    counts["batches"] = len(batch_ids)
    return out.done(), dict(counts)


# -- applications and scores ------------------------------------------------------------------

def _pages(conn: Connection, batch_id: str) -> Iterator[list[dict[str, Any]]]:
    """The batch's applications with their score and current decision, a page at a time.

    Paged over the primary key between the batch's first and last id (a rowid range scan),
    not over the batch index: ordering a million-row batch for every page made verify
    quadratic. Rows of other batches inside that range (interleaved loads) are skipped."""
    a, s, cur = applications.c, scores.c, decisions.alias("cur")
    lo, hi = conn.execute(select(func.min(a.id), func.max(a.id))
                          .where(a.batch_id == batch_id)).one()
    if lo is None:
        return
    query = (select(applications, *[s[c].label(f"s_{c}") for c in _SCORE],
                    cur.c.id.label("cur_id"), cur.c.application_id.label("cur_application"),
                    cur.c.outcome.label("cur_outcome"), cur.c.kind.label("cur_kind"))
             .select_from(applications.outerjoin(scores, s.application_id == a.id)
                          .outerjoin(cur, cur.c.id == a.current_decision_id))
             .where(a.id <= hi).order_by(a.id).limit(PAGE))
    last = int(lo) - 1
    while last < hi:
        result = conn.execute(query.where(a.id > last))
        keys = list(result.keys())
        rows = result.all()
        if not rows:
            return
        last = int(rows[-1][keys.index("id")])
        page = [dict(zip(keys, r, strict=True)) for r in rows]  # no per-row key lookups
        page = [r for r in page if r["batch_id"] == batch_id]
        if page:
            yield page


_APP = ("id", "row_number", "amount", "probability", "batch_id", "external_id", "week_start",
        "segment_1", "segment_2", "segment_3", "data", "band")
#: outcome (None: undecided) -> status shown, and the score column the expected profit is
_STATUS = {None: "pending", **{str(o): str(s) for o, s in STATUS_OF_OUTCOME.items()}}
_PROFIT = {None: "s_ev_review", "approve": "s_ev_approve", "refer": "s_ev_review", "decline": None}


def _check_batch(conn: Connection, key: InstallationKey, record: TrailRecord, bid: str,
                 out: Findings, counts: Counter[str]) -> None:
    sums = {"applications": SealSum(), "scores": SealSum()}
    numbers: set[int] = set()
    for page in _pages(conn, bid):
        counts["applications"] += len(page)
        app_seals = seal_rows(key, "applications", {c: [r[c] for r in page] for c in _APP},
                              len(page))
        scored = [r for r in page if r["s_application_id"] is not None]
        counts["scores"] += len(scored)
        score_seals = dict(zip((r["id"] for r in scored), seal_rows(
            key, "scores", {c: [r[f"s_{c}"] for r in scored] for c in _SCORE if c != "seal"},
            len(scored)), strict=True))
        sums["applications"].add([r["seal"] for r in page])  # changed rows are named below
        sums["scores"].add([r["s_seal"] for r in scored])
        numbers.update(r["row_number"] for r in page)
        for r, want in zip(page, app_seals, strict=True):
            if r["seal"] != want:
                _sealed(out, bid, "applications", _name(bid, r), r["seal"], want)
            if r["s_application_id"] is None:
                out.add(bid, "scores", f"application {_name(bid, r)}", "missing",
                        "the application has no score: its scores row was deleted")
                continue
            if r["s_seal"] != score_seals[r["id"]]:
                _sealed(out, bid, "scores", f"application {_name(bid, r)}", r["s_seal"],
                        score_seals[r["id"]])
            _check_state(out, bid, r)
    _check_sums(conn, record, bid, sums, numbers, out)


def _name(bid: str, r: dict[str, Any]) -> str:
    return f"{r['id']} (batch {bid} row {r['row_number']}, {r['external_id']})"


def _sealed(out: Findings, bid: str, table: str, name: str, stored: str | None, want: str) -> bool:
    if stored is None:
        out.add(bid, table, name, "unsealed", "has no seal: written outside FinFlow, or before "
                "FinFlow sealed rows (`finflow audit seal-legacy` adopts those)")
        return False
    if not hmac.compare_digest(str(stored), want):
        out.add(bid, table, name, "changed", "was changed outside FinFlow: it no longer matches "
                "its seal")
        return False
    return True


def _check_state(out: Findings, bid: str, r: dict[str, Any]) -> None:
    """The current state kept on the application row must follow from score and decision."""
    outcome = r["cur_outcome"]
    column = _PROFIT.get(outcome)
    # a decline earns nothing; an unpriced batch (no economics) shows no figure at all
    unpriced_decline = None if r["s_ev_approve"] is None else 0.0
    want = unpriced_decline if column is None else r[column]
    if (r["probability"] == r["s_probability"] and r["band"] == r["s_band"]
            and r["status"] == _STATUS.get(outcome) and r["decided_kind"] == r["cur_kind"]
            and r["current_decision_id"] == r["cur_id"]
            and (r["cur_id"] is None or r["cur_application"] == r["id"])
            and (outcome is not None or r["band"] == "medium")
            and (want == r["expected_profit"] or _same(r["expected_profit"], want))):
        return  # the usual case, checked at once
    name = _name(bid, r)

    def bad(message: str) -> None:
        out.add(bid, "applications", name, "inconsistent", message)

    if r["probability"] != r["s_probability"] or r["band"] != r["s_band"]:
        bad(f"shows probability {r['probability']!r} and band {r['band']}, but its sealed score "
            f"says {r['s_probability']!r} and {r['s_band']}")
    if r["current_decision_id"] is not None and r["cur_id"] is None:
        bad(f"its current decision {r['current_decision_id']} does not exist (deleted)")
        return
    if r["cur_id"] is not None and r["cur_application"] != r["id"]:
        bad(f"its current decision {r['cur_id']} belongs to application {r['cur_application']}")
        return
    status = _STATUS.get(outcome)
    if r["status"] != status or r["decided_kind"] != r["cur_kind"]:
        bad(f"shows status {r['status']} ({r['decided_kind'] or 'undecided'}), but its current "
            f"decision says {status} ({r['cur_kind'] or 'undecided'})")
    if outcome is None and r["band"] != "medium":
        bad(f"is in band {r['band']} but has no automatic decision")
    if not _same(r["expected_profit"], want):
        bad(f"shows expected profit {r['expected_profit']!r}, but its score and decision give "
            f"{want!r}")


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None or a != a or b != b:
        return (a is None or a != a) == (b is None or b != b)
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


def _check_sums(conn: Connection, record: TrailRecord, bid: str, sums: dict[str, SealSum],
                numbers: set[int], out: Findings) -> None:
    scored = record.batch_scored.get(bid)
    adopted = record.adopted_batches.get(bid)
    recorded = (scored.details.get("seals") if scored else None) or (adopted.details if adopted else None)
    if not recorded:
        return  # stored before sealing and not adopted: every row was reported unsealed
    seq = adopted.seq if adopted and not (scored and scored.details.get("seals")) else scored.seq
    for table, total in sums.items():
        want, got = recorded.get(table), total.value()
        if want is not None and want != got:
            out.add(bid, table, f"batch {bid}", "missing",
                    f"{got['n']} rows stored, audit entry {seq} recorded {want.get('n')} (or "
                    "others): rows were deleted, or replaced by rows from elsewhere")
    uploaded = record.batch_uploaded.get(bid)
    rows_in = int(uploaded.details.get("rows_in", 0)) if uploaded else 0
    quarantined = set(conn.execute(select(quarantine_rows.c.row_number)
                                   .where(quarantine_rows.c.batch_id == bid)).scalars())
    for missing in sorted(set(range(1, rows_in + 1)) - numbers - quarantined):
        out.add(bid, "applications", f"batch {bid} row {missing}", "missing",
                "the file's row is neither stored nor quarantined: its application was deleted")


# -- decisions -----------------------------------------------------------------------------------

def _check_auto(conn: Connection, record: TrailRecord, out: Findings, counts: Counter[str]) -> None:
    """Automatic decisions carry no seal: each must be exactly what its sealed score implies."""
    a, d, s = applications.c, decisions.c, scores.c
    query = (select(d.id, d.application_id, d.outcome, d.decided_by, d.reason, d.note,
                    d.decided_at, d.model_version, d.supersedes_id, a.batch_id, a.row_number,
                    a.external_id, s.band, s.model_version.label("s_model_version"), s.reasons,
                    s.scored_at)
             .select_from(decisions.join(applications, a.id == d.application_id)
                          .outerjoin(scores, s.application_id == d.application_id))
             .where(d.kind == "auto").order_by(d.id).limit(PAGE))
    tally: dict[str, Counter[str]] = defaultdict(Counter)
    decided: set[int] = set()  # applications with an automatic decision
    last = 0
    while page := conn.execute(query.where(d.id > last)).mappings().all():
        last = int(page[-1]["id"])
        counts["decisions"] += len(page)
        for r in page:
            tally[r["batch_id"]][r["outcome"]] += 1
            decided.add(int(r["application_id"]))
            why = _auto_problem(r)
            if why:
                out.add(r["batch_id"], "decisions", f"{r['id']} (automatic, application "
                        f"{r['application_id']}, batch {r['batch_id']} row {r['row_number']})",
                        "changed", why)
    for bid, event in record.batch_scored.items():
        stored = tally.get(bid, Counter())
        for outcome, detail in ((Outcome.APPROVE, "automatic_approvals"),
                                (Outcome.DECLINE, "automatic_declines")):
            want = event.details.get(detail)
            if want is not None and want != stored[outcome]:
                out.add(bid, "decisions", f"batch {bid}", "missing",
                        f"{stored[outcome]} automatic {outcome}s stored, audit entry {event.seq} "
                        f"recorded {want}")
    # one scan, matched here: a NOT EXISTS per application let SQLite search the decisions by
    # their kind index, quadratic (458 s for 100k applications)
    banded = select(a.id, a.batch_id, a.row_number, a.band).where(a.band.in_(("low", "high")))
    for r in conn.execute(banded):
        if int(r.id) in decided:
            continue
        out.add(r.batch_id, "decisions", f"application {r.id} (batch {r.batch_id} row "
                f"{r.row_number})", "missing", f"band {r.band} but no automatic decision: it was "
                "deleted")


def _auto_problem(r: Any) -> str:
    if r["band"] is None:
        return "its application has no score"
    outcome = AUTO_OUTCOME.get(r["band"])
    if outcome is None:
        return f"an automatic decision for a {r['band']}-band application (only officers decide those)"
    model = r["s_model_version"]
    if (r["outcome"] == outcome and r["decided_by"] == f"model:{model}" and r["model_version"] == model
            and r["decided_at"] == r["scored_at"] and r["supersedes_id"] is None and r["note"] == ""
            and (r["reason"] == "") == (outcome != Outcome.DECLINE)
            and (outcome != Outcome.DECLINE or r["reason"] == reason_texts(json.loads(r["reasons"])))):
        return ""  # the usual case
    reason = reason_texts(json.loads(r["reasons"])) if outcome == Outcome.DECLINE else ""
    expected = {"outcome": outcome, "decided_by": f"model:{model}", "model_version": model,
                "decided_at": r["scored_at"], "supersedes_id": None, "note": "", "reason": reason}
    wrong = [f"{k} {r[k]!r} (its sealed score gives {v!r})" for k, v in expected.items() if r[k] != v]
    return "; ".join(wrong)


def _check_manual(conn: Connection, key: InstallationKey, record: TrailRecord, out: Findings,
                  counts: Counter[str]) -> None:
    seen = set()
    rows = conn.execute(select(decisions).where(decisions.c.kind == "manual")
                        .order_by(decisions.c.id)).mappings()
    for r in rows:
        counts["decisions"] += 1
        counts["manual"] += 1
        seen.add(int(r["id"]))
        name = f"{r['id']} (by {r['decided_by']}, application {r['application_id']})"
        event = record.manual.get(int(r["id"]))
        want = seal_row(key, "decisions", r)
        adopted = record.seals.get(("decisions", str(r["id"])))
        if r["seal"] is None and adopted is not None:  # from before sealing: the trail keeps it
            sealed = hmac.compare_digest(adopted[1], want)
            if not sealed:
                out.add("manual", "decisions", name, "changed", "was changed outside FinFlow: it "
                        f"no longer matches the seal audit entry {adopted[0]} recorded")
        else:
            sealed = _sealed(out, "manual", "decisions", name, r["seal"], want)
        if event is None:
            out.add("manual", "decisions", name, "unrecorded", "no case_decided entry records it: "
                    "inserted outside FinFlow, or its entry was deleted")
            continue
        det = event.details
        same = (event.actor == r["decided_by"] and det.get("outcome") == r["outcome"]
                and det.get("reason") == r["reason"] and det.get("note") == r["note"]
                and det.get("supersedes") == r["supersedes_id"])
        ref = det.get("row_seal") or {}
        if not same or (sealed and ref.get("seal") not in (None, want)):
            out.add("manual", "decisions", name, "changed", f"differs from audit entry {event.seq}")
    for decision_id, event in sorted(record.manual.items()):
        if decision_id not in seen:
            out.add("manual", "decisions", str(decision_id), "missing",
                    f"recorded by audit entry {event.seq} but no longer stored: it was deleted")
    a, d = applications.c, decisions.c
    succ = decisions.alias("succ")
    stale = (select(a.id, a.batch_id, a.current_decision_id)
             .select_from(applications.join(succ, succ.c.supersedes_id == a.current_decision_id)))
    for r in conn.execute(stale):
        out.add(r.batch_id, "applications", str(r.id), "inconsistent",
                f"points at decision {r.current_decision_id}, which a later decision superseded")
    lost = (select(a.id, a.batch_id).where(a.current_decision_id.is_(None))
            .where(exists().where(d.application_id == a.id)))
    for r in conn.execute(lost):
        out.add(r.batch_id, "applications", str(r.id), "inconsistent",
                "shows no decision, but decisions are stored for it")
