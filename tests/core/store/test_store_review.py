"""Decisions are never overwritten, and two officers never both decide one case."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from store_helpers import (
    BatchFiles,
    Lending,
    first_decisions_per_application,
    raw_sql,
)
from store_workers import decide_in_process
from trail import audit_rows

from finflow_core.errors import Conflict
from finflow_core.lending.config import Config, load_config
from finflow_core.services.access import Principal
from finflow_core.services.context import Context
from finflow_core.services.review import (
    CaseView,
    ClaimInfo,
    DecisionRecord,
    InvalidDecision,
    QueueRow,
)
from finflow_core.services.workbench import Workbench
from finflow_core.store import Store, open_store
from finflow_core.store.audit_chain import verify_audit
from finflow_core.store.decision_check import verify_decisions
from finflow_core.store.lending_tables import applications, claims, decisions
from finflow_core.store.rollup import check_rollups

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures


# -- the review service, called the way these tests read best ----------------------------------

def _review(store: Store, actor: Principal, clock: Any = None):  # type: ignore[no-untyped-def]
    ctx = Context(load_config(), store, **({"clock": clock} if clock is not None else {}))
    return Workbench(ctx, actor).review


def decide_case(store: Store, actor: Principal, case: int, outcome: str, reason: str = "",
                note: str = "", *, supersedes: int | None = None, clock: Any = None) -> DecisionRecord:
    return _review(store, actor, clock).decide(case, outcome, reason, note, supersedes=supersedes)


def claim_case(store: Store, actor: Principal, case: int, config: Config, *,
               clock: Any = None) -> ClaimInfo:
    return _review(store, actor, clock).claim(case)


def release_claim(store: Store, actor: Principal, case: int) -> None:
    _review(store, actor).release(case)


def case_view(store: Store, actor: Principal, case: int, config: Config, *, clock: Any = None) -> CaseView:
    return _review(store, actor, clock).case(case)


def open_case(store: Store, actor: Principal, case: int, config: Config, *, claim: bool = True,
              clock: Any = None) -> CaseView:
    return _review(store, actor, clock).open(case, claim=claim)


def review_queue(store: Store, actor: Principal, *, status: str = "pending",
                 clock: Any = None) -> tuple[list[QueueRow], int]:
    page = _review(store, actor, clock).queue(status)
    return page.rows, page.total


def next_case(store: Store, actor: Principal, *, clock: Any = None) -> int | None:
    return _review(store, actor, clock).next_case()

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OLGA = Principal(None, "olga.officer", frozenset({"officer"}))
PAUL = Principal(None, "paul.officer", frozenset({"officer"}))


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


def app_row(store: Store, application_id: int) -> Any:
    with store.connect() as conn:
        return conn.execute(select(applications).where(applications.c.id == application_id)).one()


def decision_rows(store: Store, application_id: int) -> list[Any]:
    with store.connect() as conn:
        return conn.execute(select(decisions).where(decisions.c.application_id == application_id)
                            .order_by(decisions.c.id)).all()


@pytest.fixture
def stored(ffa: Lending) -> Lending:
    """A stored batch, on each backend (for what the database must guarantee)."""
    return ffa


@pytest.fixture
def stored_sqlite(ffa_sqlite: Lending) -> Lending:
    """A stored batch on SQLite (for rules that live in the code, the same on both backends)."""
    return ffa_sqlite


# -- decisions are never overwritten -------------------------------------------------------------

def test_a_changed_decision_is_a_new_record_that_supersedes_the_old(stored: Lending) -> None:
    case = stored.pending_ids()[0]
    first = decide_case(stored.store, OLGA, case, "approve", note="strong cash flow")
    assert (first.supersedes_id, first.kind, first.decided_by) == (None, "manual", OLGA.username)
    assert first.model_version == stored.version
    second = decide_case(stored.store, OLGA, case, "decline", reason="new information: lawsuit",
                         supersedes=first.id)
    assert second.supersedes_id == first.id

    history = decision_rows(stored.store, case)
    assert [(d.id, d.outcome, d.supersedes_id) for d in history] == [
        (first.id, "approve", None), (second.id, "decline", first.id)]
    app = app_row(stored.store, case)
    assert (app.status, app.current_decision_id, app.decided_kind) == ("declined", second.id, "manual")
    view = case_view(stored.store, OLGA, case, stored.config)
    assert [d.id for d in view.decisions] == [first.id, second.id]
    with stored.store.connect() as conn:
        assert check_rollups(conn) == []
    assert verify_decisions(stored.store).ok


def test_revising_a_decision_that_is_no_longer_current_is_refused(stored_sqlite: Lending) -> None:
    stored = stored_sqlite
    case = stored.pending_ids()[0]
    first = decide_case(stored.store, OLGA, case, "approve")
    decide_case(stored.store, PAUL, case, "decline", reason="fraud flag", supersedes=first.id)
    with pytest.raises(Conflict, match=PAUL.username) as caught:
        decide_case(stored.store, OLGA, case, "refer", note="second look", supersedes=first.id)
    assert caught.value.details["decided_by"] == PAUL.username
    assert "no longer the current one" in caught.value.message
    assert len(decision_rows(stored.store, case)) == 2


def test_an_officer_can_override_an_automatic_decision_by_superseding_it(stored_sqlite: Lending) -> None:
    stored = stored_sqlite
    with stored.store.connect() as conn:
        app_id, auto_id = conn.execute(
            select(applications.c.id, applications.c.current_decision_id)
            .where(applications.c.status == "declined").limit(1)
        ).one()
    with pytest.raises(Conflict, match="automatically") as caught:
        decide_case(stored.store, OLGA, app_id, "approve")
    assert caught.value.details["decided_by"].startswith("model:")
    revised = decide_case(stored.store, OLGA, app_id, "approve", note="collateral verified",
                          supersedes=auto_id)
    assert revised.supersedes_id == auto_id
    assert [d.kind for d in decision_rows(stored.store, app_id)] == ["auto", "manual"]
    with stored.store.connect() as conn:
        assert check_rollups(conn) == []
    assert verify_decisions(stored.store).ok


def test_a_referral_is_followed_by_a_decision_that_supersedes_it(stored_sqlite: Lending) -> None:
    stored = stored_sqlite
    case = stored.pending_ids()[0]
    with pytest.raises(InvalidDecision, match="note"):
        decide_case(stored.store, OLGA, case, "refer")
    referral = decide_case(stored.store, OLGA, case, "refer", note="check the accounts")
    assert app_row(stored.store, case).status == "referred"
    rows, total = review_queue(stored.store, OLGA, status="referred")
    assert total == 1 and rows[0].id == case
    # deciding a referred case names the referral it follows: without it, it is refused
    with pytest.raises(Conflict, match="refer"):
        decide_case(stored.store, PAUL, case, "approve")
    again = decide_case(stored.store, PAUL, case, "refer", note="senior officer, please",
                        supersedes=referral.id)
    assert again.supersedes_id == referral.id  # referred -> referred: the same roll-up group
    with pytest.raises(Conflict, match="no longer the current one"):  # a stale view of the case
        decide_case(stored.store, OLGA, case, "approve", supersedes=referral.id)
    final = decide_case(stored.store, OLGA, case, "approve", supersedes=again.id)
    assert final.supersedes_id == again.id
    assert app_row(stored.store, case).status == "approved"
    with stored.store.connect() as conn:
        assert check_rollups(conn) == []


def test_the_database_refuses_to_update_or_delete_decisions(stored: Lending) -> None:
    case = stored.pending_ids()[0]
    decide_case(stored.store, OLGA, case, "approve")
    before = stored.counts()
    with stored.store.connect() as conn:
        snapshot = conn.execute(select(decisions).order_by(decisions.c.id)).all()
    for statement in (
        "UPDATE decisions SET outcome = 'approve'",
        "UPDATE decisions SET decided_by = 'someone else' WHERE id = (SELECT min(id) FROM decisions)",
        "DELETE FROM decisions",
        "DELETE FROM decisions WHERE id = (SELECT max(id) FROM decisions)",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            raw_sql(stored.store, statement)
    with stored.store.connect() as conn:
        assert conn.execute(select(decisions).order_by(decisions.c.id)).all() == snapshot
    assert stored.counts() == before


@pytest.mark.postgres
def test_postgres_also_refuses_truncating_decisions(ff_pg: Lending, batches_dir: BatchFiles) -> None:
    ff_pg.run(batches_dir.a)
    n = ff_pg.count("decisions")
    with pytest.raises(DBAPIError, match="append-only"):
        raw_sql(ff_pg.store, "TRUNCATE decisions CASCADE")
    assert ff_pg.count("decisions") == n > 0


# -- two officers, one case ------------------------------------------------------------------------

def test_a_claimed_case_shows_who_since_when_and_others_cannot_decide_it(stored: Lending) -> None:
    clock = Clock()
    case = stored.pending_ids()[0]
    info = claim_case(stored.store, OLGA, case, stored.config, clock=clock)
    assert info.claimed_by == OLGA.username
    clock.advance(5)

    view = open_case(stored.store, PAUL, case, stored.config, clock=clock)  # does not steal it
    assert view.claim is not None and view.claim.claimed_by == OLGA.username
    assert view.claim.claimed_at == info.claimed_at
    with pytest.raises(Conflict) as claimed:
        claim_case(stored.store, PAUL, case, stored.config, clock=clock)
    assert claimed.value.details["claimed_by"] == OLGA.username
    assert claimed.value.details["claimed_at"] == info.claimed_at
    assert "olga.officer since 2026-03-02 09:00" in claimed.value.message

    before = stored.counts()
    with pytest.raises(Conflict) as refused:
        decide_case(stored.store, PAUL, case, "approve", clock=clock)
    assert refused.value.details["reason"] == "claimed"
    assert refused.value.details["claimed_by"] == OLGA.username
    assert stored.counts() == before  # nothing written, not even an audit entry
    rows, _ = review_queue(stored.store, PAUL, clock=clock)
    assert next(r for r in rows if r.id == case).claimed_by == OLGA.username
    assert next_case(stored.store, PAUL, clock=clock) != case
    assert next_case(stored.store, OLGA, clock=clock) == case  # her own claim counts as free

    decided = decide_case(stored.store, OLGA, case, "approve", clock=clock)
    assert decided.decided_by == OLGA.username
    with stored.store.connect() as conn:  # the claim ends with the decision
        assert conn.execute(select(claims).where(claims.c.application_id == case)).first() is None


def test_a_claim_expires_after_the_configured_minutes(stored_sqlite: Lending) -> None:
    stored = stored_sqlite
    clock = Clock()
    minutes = stored.config.review.claim_minutes
    case = stored.pending_ids()[0]
    claim_case(stored.store, OLGA, case, stored.config, clock=clock)
    clock.advance(minutes - 0.1)
    with pytest.raises(Conflict):
        claim_case(stored.store, PAUL, case, stored.config, clock=clock)
    with pytest.raises(Conflict):
        decide_case(stored.store, PAUL, case, "approve", clock=clock)
    clock.advance(0.2)  # now past the claim's end
    assert case_view(stored.store, PAUL, case, stored.config, clock=clock).claim is None
    taken = claim_case(stored.store, PAUL, case, stored.config, clock=clock)
    assert taken.claimed_by == PAUL.username
    claim_events = [e for e in audit_rows(stored.store, action="case_claimed")]
    assert [e["actor"] for e in claim_events] == [OLGA.username, PAUL.username]
    assert claim_events[1]["details"]["taken_over_from"] == OLGA.username
    # the first officer comes back: now she is the one refused
    with pytest.raises(Conflict) as caught:
        decide_case(stored.store, OLGA, case, "decline", reason="x", clock=clock)
    assert caught.value.details["claimed_by"] == PAUL.username


def test_an_expired_claim_does_not_block_a_decision(stored_sqlite: Lending) -> None:
    stored = stored_sqlite
    clock = Clock()
    case = stored.pending_ids()[0]
    claim_case(stored.store, OLGA, case, stored.config, clock=clock)
    clock.advance(stored.config.review.claim_minutes + 1)
    assert decide_case(stored.store, PAUL, case, "approve", clock=clock).decided_by == PAUL.username


def test_releasing_a_claim_frees_the_case_only_for_its_holder(stored_sqlite: Lending) -> None:
    stored = stored_sqlite
    clock = Clock()
    case = stored.pending_ids()[0]
    claim_case(stored.store, OLGA, case, stored.config, clock=clock)
    release_claim(stored.store, PAUL, case)  # not his: no effect
    with pytest.raises(Conflict):
        claim_case(stored.store, PAUL, case, stored.config, clock=clock)
    release_claim(stored.store, OLGA, case)
    assert claim_case(stored.store, PAUL, case, stored.config, clock=clock).claimed_by == PAUL.username


def test_deciding_a_case_someone_decided_meanwhile_names_the_winner(stored: Lending) -> None:
    case = stored.pending_ids()[0]
    view_olga = open_case(stored.store, OLGA, case, stored.config, claim=False)
    view_paul = open_case(stored.store, PAUL, case, stored.config, claim=False)
    assert view_olga.is_open and view_paul.is_open
    decide_case(stored.store, PAUL, case, "decline", reason="thin file")
    before = stored.counts()
    with pytest.raises(Conflict) as caught:
        decide_case(stored.store, OLGA, case, "approve")
    message = caught.value.message
    assert "already decided by paul.officer" in message and "decline" in message
    assert caught.value.details["decided_by"] == PAUL.username
    assert stored.counts() == before
    with pytest.raises(Conflict, match="already decided by paul.officer"):
        claim_case(stored.store, OLGA, case, stored.config)


# -- the race ------------------------------------------------------------------------------------

OFFICERS = [Principal(None, f"officer{i}", frozenset({"officer"})) for i in range(8)]


def race(stores: list[Store], cases: list[int]) -> tuple[dict[tuple[str, int], Any], list[BaseException]]:
    """Every officer tries to decide every case, in its own random order, all at once."""
    results: dict[tuple[str, int], Any] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(OFFICERS))

    def work(i: int) -> None:
        officer, store = OFFICERS[i], stores[i % len(stores)]
        order = cases[:]
        random.Random(i).shuffle(order)
        try:
            barrier.wait()
            for case in order:
                outcome = ("approve", "decline")[i % 2]
                try:
                    results[(officer.username, case)] = decide_case(
                        store, officer, case, outcome, reason="race", note="race")
                except Conflict as exc:
                    results[(officer.username, case)] = exc
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(OFFICERS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a racing officer hung"
    return results, errors


def check_race(store: Store, cases: list[int], results: dict[tuple[str, int], Any]) -> None:
    assert cases, "no cases were raced for: every check below would hold vacuously"
    with store.connect() as conn:
        firsts = first_decisions_per_application(conn)
        assert {c: firsts.get(c, 0) for c in cases} == dict.fromkeys(cases, 1)
        winners = dict(conn.execute(
            select(decisions.c.application_id, decisions.c.decided_by)
            .where(decisions.c.application_id.in_(cases))
        ).all())
        assert conn.execute(text("SELECT count(*) FROM decisions WHERE supersedes_id IS NOT NULL "
                                 "AND kind = 'manual'")).scalar_one() == 0
        assert check_rollups(conn) == []
    for case in cases:
        outcomes = {who: r for (who, c), r in results.items() if c == case}
        assert len(outcomes) == len(OFFICERS)
        won = [who for who, r in outcomes.items() if not isinstance(r, Conflict)]
        assert won == [winners[case]], f"case {case}: {won} recorded, {winners[case]} stored"
        for who, r in outcomes.items():
            if who != winners[case]:
                assert f"by {winners[case]}" in r.message, r.message
                assert r.details["decided_by"] == winners[case]
    assert verify_audit(store).ok
    check = verify_decisions(store)
    assert check.ok and check.manual_checked == len(cases), check.message
    assert len(audit_rows(store, action="case_decided")) == len(cases)


@pytest.mark.heavy
def test_officers_in_separate_processes_decide_each_case_exactly_once(
    ff_sqlite: Lending, batches_dir: BatchFiles
) -> None:
    """The race again with one process per officer (spawned, each opening its own store)."""
    import multiprocessing

    ff_sqlite.run(batches_dir.a)
    cases = ff_sqlite.pending_ids()[:15]
    assert len(cases) == 15
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(len(OFFICERS)), ctx.Queue()
    procs = [ctx.Process(target=decide_in_process,
                         args=(ff_sqlite.url, o.username, cases, i, barrier, queue))
             for i, o in enumerate(OFFICERS)]
    for p in procs:
        p.start()
    reports = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert [r for out in reports.values() for r in out if r[1] == "error"] == []
    results: dict[tuple[str, int], Any] = {}
    for officer, out in reports.items():
        for case, status, who, message in out:
            results[(officer, case)] = (
                Conflict(message, decided_by=who) if status == "lost" else who)
    check_race(ff_sqlite.store, cases, results)


@pytest.mark.parametrize("own_store", [False, True], ids=["shared-store", "store-per-officer"])
def test_eight_officers_racing_for_the_same_cases_decide_each_exactly_once(
    stored: Lending, own_store: bool
) -> None:
    cases = stored.pending_ids()[:12]
    assert len(cases) == 12
    stores = [open_store(stored.url) for _ in OFFICERS] if own_store else [stored.store]
    try:
        results, errors = race(stores, cases)
    finally:
        if own_store:
            for s in stores:
                s.close()
    assert errors == []
    check_race(stored.store, cases, results)


def test_officers_racing_to_claim_one_case_leave_exactly_one_holder(stored: Lending) -> None:
    case = stored.pending_ids()[0]
    clock = Clock()
    barrier = threading.Barrier(len(OFFICERS))
    outcomes: dict[str, Any] = {}

    def grab(officer: Principal) -> None:
        barrier.wait()
        try:
            outcomes[officer.username] = claim_case(stored.store, officer, case, stored.config, clock=clock)
        except Conflict as exc:
            outcomes[officer.username] = exc

    threads = [threading.Thread(target=grab, args=(o,)) for o in OFFICERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [who for who, r in outcomes.items() if not isinstance(r, Conflict)]
    assert len(outcomes) == len(OFFICERS) and len(winners) == 1
    for who, r in outcomes.items():
        if who != winners[0]:
            assert r.details["claimed_by"] == winners[0] and winners[0] in r.message
    with stored.store.connect() as conn:
        assert conn.execute(select(claims.c.claimed_by).where(claims.c.application_id == case)).all() \
            == [(winners[0],)]
    assert [e["actor"] for e in audit_rows(stored.store, action="case_claimed")] == winners


def same_group_pairs(store: Store, n: int) -> list[tuple[int, int]]:
    """Pending cases two by two from the same roll-up group (week, batch, band, segments)."""
    a = applications.c
    with store.connect() as conn:
        rows = conn.execute(select(a.id, a.week_start, a.batch_id, a.segment_1, a.segment_2)
                            .where(a.status == "pending").order_by(a.id)).all()
    groups: dict[tuple[Any, ...], list[int]] = {}
    for r in rows:
        groups.setdefault(tuple(r[1:]), []).append(r.id)
    pairs = [(ids[i], ids[i + 1]) for ids in groups.values() for i in range(0, len(ids) - 1, 2)]
    assert len(pairs) >= n
    return pairs[:n]


def test_officers_revising_decisions_both_ways_at_once_do_not_deadlock(stored: Lending) -> None:
    """Two revisions in one roll-up group moving opposite ways (approved -> declined and
    declined -> approved) touch the same two roll-up rows: they must not deadlock."""
    pairs = same_group_pairs(stored.store, 4)
    current: dict[int, int] = {}
    for x, y in pairs:
        current[x] = decide_case(stored.store, OLGA, x, "approve").id
        current[y] = decide_case(stored.store, OLGA, y, "decline", reason="start").id
    workers = [(w, case) for w, case in enumerate(c for pair in pairs for c in pair)]
    rounds = 8
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(workers))

    def flip(worker: int, case: int) -> None:
        officer = Principal(None, f"flipper{worker}", frozenset({"officer"}))
        try:
            for _ in range(rounds):
                barrier.wait(timeout=60)
                status = app_row(stored.store, case).status
                outcome = "decline" if status == "approved" else "approve"
                current[case] = decide_case(stored.store, officer, case, outcome, reason="flip",
                                            supersedes=current[case]).id
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=flip, args=w) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a flipping officer hung"
    # the root cause first; a BrokenBarrierError alone means a barrier timed out (a hang)
    assert [e for e in errors if not isinstance(e, threading.BrokenBarrierError)] == []
    assert errors == []
    with stored.store.connect() as conn:
        assert check_rollups(conn) == []
        for case, decision in current.items():
            assert conn.execute(select(applications.c.current_decision_id)
                                .where(applications.c.id == case)).scalar_one() == decision
    # every worker did every round: the first decision and one revision per round
    assert {case: len(decision_rows(stored.store, case)) for case in current} == \
        dict.fromkeys(current, 1 + rounds)
    assert verify_decisions(stored.store).ok
