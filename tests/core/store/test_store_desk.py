"""The review desk in the store: lending authority and four eyes, the model's suggestion on
each decision, the override rate, today's count and the service-level clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from store_helpers import ANALYST, BatchFiles, Lending
from trail import audit_rows

from finflow_core.cli import main as cli_main
from finflow_core.errors import Conflict, InvalidInput, PermissionDenied
from finflow_core.lending.authority import ProposalStatus, SecondLook
from finflow_core.lending.terms import Outcome, Status
from finflow_core.services.access import Principal
from finflow_core.services.context import Context
from finflow_core.services.review import FourEyesRefused, Proposal
from finflow_core.services.workbench import Workbench
from finflow_core.store.audit_chain import verify_audit
from finflow_core.store.decision_check import verify_decisions
from finflow_core.store.lending_tables import applications
from finflow_core.store.rollup import check_rollups

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures

PASSWORD = "a long enough test password"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def bench(ff: Lending, actor: Principal, clock: Any = None, **review: Any) -> Workbench:
    """The services as ``actor`` sees them, with review settings changed as given."""
    config = ff.config
    if review:
        four_eyes = review.pop("four_eyes", None)
        settings = dataclasses.replace(config.review, **review)
        if four_eyes is not None:
            settings = dataclasses.replace(settings, four_eyes=dataclasses.replace(
                settings.four_eyes, **four_eyes))
        config = dataclasses.replace(config, review=settings)
    return Workbench(Context(config, ff.store, **({"clock": clock} if clock else {})), actor)


@pytest.fixture
def desk(ffa: Lending) -> dict[str, Principal]:
    """Real users: an admin, two officers and a manager (limits are read from the store)."""
    people = ffa.users()
    admin = ffa.wb(people["admin"])
    people["paula"] = admin.users.add("paula.officer", PASSWORD, ["officer"]).principal()
    return people


def pending(ff: Lending, officer: Principal, predicate: Any = lambda case: True) -> Any:
    review = ff.wb(officer).review
    for row in review.queue(limit=1000).rows:
        case = review.case(row.id)
        if predicate(case):
            return case
    raise AssertionError("no pending case matches")


def test_an_approval_above_the_officers_limit_waits_for_a_second_officer(
        ffa: Lending, desk: dict[str, Principal]) -> None:
    oscar, paula, admin = desk["officer"], desk["paula"], ffa.wb(desk["admin"])
    case = pending(ffa, oscar, lambda c: c.amount > 20_000)
    assert admin.users.set_limit("oscar.officer", 20_000).lending_limit == 20_000
    admin.users.set_limit("paula.officer", case.amount - 1)

    ffa.wb(oscar).review.open(case.application_id)
    proposed = ffa.wb(oscar).review.decide(case.application_id, "approve", note="good payer")
    assert isinstance(proposed, Proposal)
    assert proposed.needs == (SecondLook.AUTHORITY,) and proposed.authority_limit == 20_000
    assert proposed.status is ProposalStatus.OPEN and proposed.proposed_by == "oscar.officer"
    view = ffa.wb(paula).review.case(case.application_id)
    assert view.status == Status.PENDING and view.proposal == proposed  # still open
    assert view.claim is None  # the proposer's claim went back
    # the case waits in its own list and no officer can simply decide it meanwhile
    assert [r.id for r in ffa.wb(paula).review.awaiting().rows] == [case.application_id]
    with pytest.raises(Conflict, match="awaits a second officer: oscar.officer proposed to approve"):
        ffa.wb(paula).review.decide(case.application_id, "decline", reason="thin file")
    # not by the same officer, not by one whose authority does not cover the amount
    with pytest.raises(FourEyesRefused, match="another officer"):
        ffa.wb(oscar).review.confirm(proposed.id)
    with pytest.raises(FourEyesRefused, match="does not cover"):
        ffa.wb(paula).review.confirm(proposed.id)
    admin.users.set_limit("paula.officer", case.amount)
    decided = ffa.wb(paula).review.confirm(proposed.id, note="checked the accounts")
    assert (decided.outcome, decided.decided_by, decided.proposed_by, decided.four_eyes) == (
        Outcome.APPROVE, "paula.officer", "oscar.officer", "authority")
    after = ffa.wb(oscar).review.case(case.application_id)
    assert after.status == Status.APPROVED and after.proposal is None
    assert after.proposals[0].status is ProposalStatus.CONFIRMED
    assert after.proposals[0].decision_id == decided.id
    # the trail names both officers
    trail = [(e["action"], e["actor"]) for e in audit_rows(ffa.store, "application", case.external_id)]
    assert ("case_proposed", "oscar.officer") in trail and ("case_decided", "paula.officer") in trail
    entry = next(e for e in audit_rows(ffa.store, "application", case.external_id)
                 if e["action"] == "case_decided")
    assert entry["details"]["proposed_by"] == "oscar.officer"
    assert verify_audit(ffa.store).ok and verify_decisions(ffa.store).ok
    with ffa.store.connect() as conn:
        assert check_rollups(conn) == []
    with pytest.raises(Conflict, match="already confirmed by paula.officer"):
        ffa.wb(paula).review.confirm(proposed.id)


def test_within_the_limit_and_declines_need_no_second_officer(
        ffa: Lending, desk: dict[str, Principal]) -> None:
    oscar, admin = desk["officer"], ffa.wb(desk["admin"])
    small = pending(ffa, oscar, lambda c: c.amount <= 50_000)
    large = pending(ffa, oscar, lambda c: c.amount > 50_000)
    admin.users.set_limit("oscar.officer", 50_000)
    assert ffa.wb(oscar).review.decide(small.application_id, "approve").decided_by == "oscar.officer"
    declined = ffa.wb(oscar).review.decide(large.application_id, "decline", reason="thin file")
    assert declined.outcome == Outcome.DECLINE and declined.proposed_by is None
    # a limit that covers declines too, when configured
    other = pending(ffa, oscar, lambda c: c.amount > 50_000)
    strict = bench(ffa, oscar, four_eyes={"outcomes": ("approve", "decline")})
    assert isinstance(strict.review.decide(other.application_id, "decline", reason="x"), Proposal)


def test_an_officer_without_a_limit_gets_the_configured_default(
        ffa: Lending, desk: dict[str, Principal]) -> None:
    oscar = desk["officer"]
    case = pending(ffa, oscar, lambda c: c.amount > 10_000)
    capped = bench(ffa, oscar, four_eyes={"default_limit": 10_000.0})
    assert capped.review.authority() == 10_000.0
    assert isinstance(capped.review.decide(case.application_id, "approve"), Proposal)
    assert ffa.wb(oscar).review.authority() is None  # the shipped default: no cap


def test_an_override_far_beyond_the_band_edge_needs_a_second_officer(
        ffa: Lending, desk: dict[str, Principal]) -> None:
    oscar, paula = desk["officer"], desk["paula"]
    strict = {"override_distance": 0.05}

    # declining a case the model would approve, far below the decline edge
    case = pending(ffa, oscar, lambda c: c.suggestion == Outcome.APPROVE
                   and c.edges.high_edge - c.probability > 0.05)
    proposed = bench(ffa, oscar, **strict).review.decide(case.application_id, "decline",
                                                         reason="industry outlook")
    assert isinstance(proposed, Proposal) and proposed.needs == (SecondLook.OVERRIDE,)
    assert proposed.suggestion == Outcome.APPROVE
    with pytest.raises(InvalidInput, match="needs a note"):
        bench(ffa, paula, **strict).review.reject(proposed.id)
    rejected = bench(ffa, paula, **strict).review.reject(proposed.id, note="the model is right here")
    assert rejected.status is ProposalStatus.REJECTED and rejected.closed_by == "paula.officer"
    assert ffa.wb(oscar).review.case(case.application_id).status == Status.PENDING
    actions = [e["action"] for e in audit_rows(ffa.store, "application", case.external_id)]
    assert "proposal_rejected" in actions
    # an approval the model suggests needs no one else
    assert not isinstance(bench(ffa, oscar, **strict).review.decide(case.application_id, "approve"),
                          Proposal)

    # approving a case the model declined automatically: an override, confirmed by a second
    with ffa.store.connect() as conn:
        auto_id, current = conn.execute(
            select(applications.c.id, applications.c.current_decision_id)
            .where(applications.c.status == Status.DECLINED).limit(1)).one()
    override = bench(ffa, oscar, **strict).review.decide(auto_id, "approve", note="collateral verified",
                                                         supersedes=current)
    assert isinstance(override, Proposal) and override.supersedes_id == current
    assert auto_id in [r.id for r in ffa.wb(paula).review.awaiting().rows]
    assert bench(ffa, paula, **strict).review.next_case() == auto_id  # confirmations come first
    assert bench(ffa, oscar, **strict).review.next_case() != auto_id  # never one's own
    decided = bench(ffa, paula, **strict).review.confirm(override.id)
    assert decided.supersedes_id == current and decided.four_eyes == "override"
    assert ffa.wb(oscar).review.case(auto_id).status == Status.APPROVED
    assert verify_decisions(ffa.store).ok


def test_the_proposer_may_withdraw_and_decide_again(ffa: Lending, desk: dict[str, Principal]) -> None:
    oscar, admin = desk["officer"], ffa.wb(desk["admin"])
    case = pending(ffa, oscar, lambda c: c.amount > 1_000)
    admin.users.set_limit("oscar.officer", 0)
    proposed = ffa.wb(oscar).review.decide(case.application_id, "approve")
    assert isinstance(proposed, Proposal)
    withdrawn = ffa.wb(oscar).review.reject(proposed.id)
    assert withdrawn.status is ProposalStatus.WITHDRAWN
    referred = ffa.wb(oscar).review.decide(case.application_id, "refer", note="senior look")
    assert referred.outcome == Outcome.REFER  # a referral never needs a second officer


def test_every_manual_decision_records_the_models_suggestion_and_the_override_rate(
        ffa: Lending, desk: dict[str, Principal]) -> None:
    oscar, paula, manager = desk["officer"], desk["paula"], desk["manager"]
    leans_approve = [c for c in _cases(ffa, oscar) if c.suggestion == Outcome.APPROVE][:6]
    assert len(leans_approve) == 6
    for c in leans_approve[:4]:  # oscar: 3 with the model, 1 against it
        outcome = "decline" if c is leans_approve[0] else "approve"
        rec = ffa.wb(oscar).review.decide(c.application_id, outcome, reason="r")
        assert rec.suggestion == Outcome.APPROVE
    for c in leans_approve[4:]:  # paula: both against the model
        ffa.wb(paula).review.decide(c.application_id, "decline", reason="r")
    ffa.wb(paula).review.decide(_cases(ffa, paula)[0].application_id, "refer", note="n")  # not counted

    report = ffa.wb(manager).review.override_rate()
    by = {c.officer: c for c in report.by_officer}
    assert (by["oscar.officer"].decisions, by["oscar.officer"].overrides) == (4, 1)
    assert by["oscar.officer"].declined_against == 1 and by["oscar.officer"].approved_against == 0
    assert (by["paula.officer"].decisions, by["paula.officer"].rate) == (2, 1.0)
    assert (report.overall.decisions, report.overall.overrides) == (6, 3)
    assert report.overall.rate == 0.5
    assert report.level(by["oscar.officer"]) == "alert"  # 25% > 10%
    assert (report.watch, report.alert) == (0.05, 0.10)
    with pytest.raises(PermissionDenied):
        ffa.wb(oscar).review.override_rate()  # a manager's view


def test_today_counts_what_the_officer_decided_in_the_installations_day(
        ffa: Lending, desk: dict[str, Principal]) -> None:
    oscar, paula, admin = desk["officer"], desk["paula"], ffa.wb(desk["admin"])
    # 23:30 UTC on 1 March is already 2 March in Berlin (UTC+1); 22:30 UTC is not
    late = Clock(datetime(2026, 3, 1, 23, 30, tzinfo=UTC))
    berlin = {"display": dataclasses.replace(ffa.config.display, timezone="Europe/Berlin")}
    config = dataclasses.replace(ffa.config, **berlin)

    def bench_at(actor: Principal) -> Workbench:
        return Workbench(Context(config, ffa.store, late), actor)

    cases = _cases(ffa, oscar)[:5]
    bench_at(oscar).review.decide(cases[0].application_id, "approve")
    bench_at(oscar).review.decide(cases[1].application_id, "decline", reason="r")
    late.now -= timedelta(hours=1)  # 22:30 UTC: 23:30 on 1 March in Berlin, yesterday
    bench_at(oscar).review.decide(cases[2].application_id, "refer", note="n")
    late.now += timedelta(hours=1, minutes=5)
    admin.users.set_limit("oscar.officer", 0)
    admin.users.set_limit("paula.officer", 0)
    proposal = bench_at(oscar).review.decide(cases[3].application_id, "approve")
    mine = bench_at(paula).review.decide(cases[4].application_id, "approve")
    assert isinstance(proposal, Proposal) and isinstance(mine, Proposal)
    admin.users.set_limit("oscar.officer", None)
    bench_at(oscar).review.confirm(mine.id)  # oscar confirms paula's

    day = bench_at(oscar).review.today()
    assert (day.approved, day.declined, day.referred, day.decided) == (1, 1, 0, 2)
    assert (day.confirmed_for_others, day.awaiting_second) == (1, 1)
    assert bench_at(paula).review.today().approved == 1  # her decision, though oscar confirmed it
    in_utc = Workbench(Context(ffa.config, ffa.store, late), oscar).review.today()
    assert in_utc.referred == 1  # in UTC the referral was made today


def test_overdue_cases_are_flagged_counted_and_listed_first(
        ffa: Lending, desk: dict[str, Principal], batches_dir: BatchFiles) -> None:
    oscar = desk["officer"]
    first = ffa.wb(oscar).review.case(ffa.pending_ids()[0])
    uploaded = datetime.fromisoformat(first.uploaded_at)
    clock = Clock(uploaded + timedelta(hours=25))  # batch a waited past the 24-hour level
    Workbench(Context(ffa.config, ffa.store, clock), ANALYST).batches.run(batches_dir.b,
                                                                         scoring=ffa.engine)
    clock.now += timedelta(hours=1)
    review = bench(ffa, oscar, clock).review
    desk_counts = review.desk()
    a_pending = len(ffa.pending_ids(ffa.batch_ids()[0]))
    assert desk_counts.overdue == a_pending and desk_counts.sla_hours == 24.0
    page = review.queue(order="amount", limit=5000)
    flags = [r.overdue for r in page.rows]
    assert flags == sorted(flags, reverse=True)  # every overdue case before any other
    assert sum(flags) == a_pending == page.overdue < page.total
    assert all(r.waiting_hours >= 26 for r in page.rows if r.overdue)
    assert all(1 <= r.waiting_hours < 2 for r in page.rows if not r.overdue)
    late = [r.amount for r in page.rows if r.overdue]
    assert late == sorted(late, reverse=True)  # largest first within the overdue ones
    only = review.queue(overdue_only=True, limit=5000)
    assert only.total == a_pending and all(r.overdue for r in only.rows)
    assert review.case(first.application_id).overdue
    nxt = bench(ffa, oscar, clock).review.next_case(order="amount")
    assert nxt in [r.id for r in only.rows]


def test_set_limit_is_audited_checked_and_on_the_command_line(
        ff_sqlite: Lending, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    people = ff_sqlite.users()
    admin = ff_sqlite.wb(people["admin"])
    assert admin.users.set_limit("oscar.officer", "250,000").lending_limit == 250_000
    with pytest.raises(InvalidInput, match="zero or more"):
        admin.users.set_limit("oscar.officer", -5)
    with pytest.raises(PermissionDenied):
        ff_sqlite.wb(people["manager"]).users.set_limit("oscar.officer", 1)
    entries = [e for e in audit_rows(ff_sqlite.store, "user", "oscar.officer")
               if e["action"] == "lending_limit_changed"]
    assert len(entries) == 1 and entries[0]["actor"] == "ada.admin"
    assert {u.username: u.lending_limit for u in admin.users.list()}["oscar.officer"] == 250_000

    monkeypatch.setenv("FINFLOW_USER", "ada.admin")
    monkeypatch.setenv("FINFLOW_PASSWORD", PASSWORD)
    assert cli_main(["users", "set-limit", "oscar.officer", "100000"]) == 0
    assert "oscar.officer: lending limit USD 100,000" in capsys.readouterr().out
    assert cli_main(["users", "set-limit", "oscar.officer", "lots"]) == 2
    assert "a lending limit is an amount" in capsys.readouterr().err
    assert cli_main(["users", "set-limit", "oscar.officer", "none"]) == 0
    assert {u.username: u.lending_limit for u in admin.users.list()}["oscar.officer"] is None


def _cases(ff: Lending, officer: Principal) -> list[Any]:
    review = ff.wb(officer).review
    return [review.case(r.id) for r in review.queue(limit=200).rows]


def test_one_condition_on_the_batch_governs_every_read_of_the_desk(
        ffa: Lending, desk: dict[str, Principal], batches_dir: BatchFiles,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch states (published, voided) join the desk in ``cases.on_desk`` alone: the queue,
    its counts, the next case and the cases awaiting a second officer all follow it."""
    from finflow_core.store import cases

    oscar, paula, admin = desk["officer"], desk["paula"], ffa.wb(desk["admin"])
    ffa.run(batches_dir.b)
    hidden, shown = ffa.batch_ids()[:2]
    case = ffa.wb(oscar).review.case(ffa.pending_ids(hidden)[0])
    admin.users.set_limit("oscar.officer", 0)
    assert isinstance(ffa.wb(oscar).review.decide(case.application_id, "approve"), Proposal)
    review = ffa.wb(paula).review
    before = review.desk()
    assert before.awaiting == 1 and review.next_case() == case.application_id

    monkeypatch.setattr(cases, "on_desk", lambda batch_id=applications.c.batch_id: batch_id != hidden)
    rows = review.queue(limit=5000).rows
    assert rows and {r.batch_id for r in rows} == {shown}
    after = review.desk()
    assert after.pending == len(ffa.pending_ids(shown)) < before.pending
    assert (after.awaiting, review.awaiting().rows, review.counts()[Status.PENDING]) == (
        0, [], after.pending)
    nxt = review.next_case()
    assert nxt is not None and review.case(nxt).batch_id == shown
