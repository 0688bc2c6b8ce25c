"""The review queue: claiming, deciding, the refusals, and two officers on one case."""

from __future__ import annotations

import json

import pytest
from app_support import no_exception, page_as, table_with, texts


def wbs(principal):  # type: ignore[no-untyped-def]
    """The services as ``principal`` sees them (on the session installation)."""
    from finflow_core.services.workbench import Workbench

    return Workbench(_INST[0].context, principal)


_INST: list = []


@pytest.fixture(autouse=True)
def _remember(inst) -> None:  # type: ignore[no-untyped-def]
    _INST[:] = [inst]


def pending_ids(inst, limit: int = 5000) -> list[int]:  # type: ignore[no-untyped-def]
    return [r.id for r in inst.wb("manager").review.queue(limit=limit).rows]


def open_next(at):  # type: ignore[no-untyped-def]
    return at.button(key="rq_next").click().run()


def decide(at, case_id: int, outcome: str | None, code: str | None = None, reason: str = "",  # type: ignore[no-untyped-def]
           note: str = ""):
    if outcome is not None:
        at.radio(key=f"dec_outcome_{case_id}").set_value(outcome)
    if code is not None:
        at.selectbox(key=f"dec_code_{case_id}").set_value(code)
    at.text_input(key=f"dec_reason_{case_id}").input(reason)
    at.text_area(key=f"dec_note_{case_id}").input(note)
    return next(b for b in at.form_submit_button if b.label == "Record decision").click().run()


def test_the_queue_shows_how_many_wait_oldest_first(inst) -> None:
    at = page_as(inst.users["officer"], "pages/review_queue.py")
    no_exception(at)
    counts = inst.wb("officer").review.counts()
    assert next(m.value for m in at.metric if m.label == "Pending review") == f"{counts['pending']:,}"
    table = table_with(at, "case")
    assert len(table) == 25  # paginated
    assert table["case"].tolist() == sorted(table["case"].tolist())
    assert table["case"].tolist() == pending_ids(inst)[:25]
    at.radio(key="rq_order").set_value("amount").run()
    amounts = table_with(at, "case")["amount"].tolist()
    assert amounts == sorted(amounts, reverse=True)


def test_an_officer_works_a_case_to_a_decision_and_it_leaves_the_queue(inst) -> None:
    officer = inst.users["officer"]
    at = page_as(officer, "pages/review_queue.py")
    first = wbs(officer).review.next_case()
    at = open_next(at)
    no_exception(at)
    case = wbs(officer).review.case(first)
    assert case.claim is not None and case.claim.claimed_by == "officer"  # opening claimed it
    assert [t.value for t in at.title] == [f"Case {case.external_id}"]
    shown = texts(at)
    for reason in case.reasons:
        assert reason["text"] in shown
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["data"][0]["type"] == "waterfall"
    assert spec["data"][0]["y"][0] == "Model average" and spec["data"][0]["y"][-1] == "This case"

    # a decline without a reason is refused and nothing is recorded
    at = decide(at, first, "decline")
    assert [e.value for e in at.error] == ["a decline needs a reason: pick a reason code or write one"]
    assert wbs(officer).review.case(first).status == "pending"

    at = decide(at, first, "decline", code=case.reasons[0]["text"])
    no_exception(at)
    after = wbs(officer).review.case(first)
    assert after.status == "declined"
    assert after.decisions[-1].decided_by == "officer" and after.decisions[-1].reason == case.reasons[0]["text"]
    assert first not in pending_ids(inst)
    assert f"Case {case.external_id}: decline recorded." in [s.value for s in at.success]
    # the next case opened by itself
    nxt = at.session_state["rq_case"]
    assert nxt != first and nxt in pending_ids(inst)
    assert [t.value for t in at.title] == [f"Case {wbs(officer).review.case(nxt).external_id}"]

    # approving it needs no reason; a written reason wins over the code
    at = decide(at, nxt, "approve", reason="strong cash flow")
    no_exception(at)
    decided = wbs(officer).review.case(nxt)
    assert decided.status == "approved" and decided.decisions[-1].reason == "strong cash flow"


def test_a_referral_needs_a_note_and_lands_in_the_referred_list(inst) -> None:
    officer = inst.users["officer"]
    at = open_next(page_as(officer, "pages/review_queue.py"))
    case_id = at.session_state["rq_case"]
    at = decide(at, case_id, "refer")
    assert [e.value for e in at.error] == ["a referral needs a note saying what to look at"]
    at = decide(at, case_id, "refer", note="check the guarantor")
    no_exception(at)
    assert wbs(officer).review.case(case_id).status == "referred"
    at.button(key="rq_back").click().run()
    at.radio(key="rq_status").set_value("referred").run()
    assert case_id in table_with(at, "case")["case"].tolist()


def test_a_case_held_by_another_officer_is_shown_held_and_cannot_be_decided(inst) -> None:
    first = open_next(page_as(inst.users["officer"], "pages/review_queue.py"))
    case_id = first.session_state["rq_case"]

    other = page_as(inst.users["officer2"], "pages/review_queue.py")
    row = table_with(other, "case").set_index("case").loc[case_id]
    assert row["being reviewed by"] == "officer"
    other.selectbox(key="rq_choice").set_value(case_id)
    other.button(key="rq_open").click().run()
    no_exception(other)
    held = [w.value for w in other.warning]
    assert len(held) == 1 and held[0].startswith("Being reviewed by **officer** since ")
    submit = next(b for b in other.form_submit_button if b.label == "Record decision")
    assert submit.disabled
    assert other.radio(key=f"dec_outcome_{case_id}").disabled
    view = wbs(inst.users["officer2"]).review.case(case_id)
    assert view.claim is not None and view.claim.claimed_by == "officer"  # not taken over
    # "Work the next case" skips the held case
    other.button(key="rq_back").click().run()
    other = open_next(other)
    assert other.session_state["rq_case"] != case_id


def test_a_decided_case_shows_who_decided_and_the_form_is_disabled(inst) -> None:
    officer = inst.users["officer"]
    case_id = wbs(officer).review.next_case()
    wbs(officer).review.open(case_id)
    wbs(officer).review.decide(case_id, "approve")
    at = page_as(inst.users["officer2"], "pages/review_queue.py")
    at.session_state["rq_case"] = case_id
    at.run()
    no_exception(at)
    assert any(i.value.startswith("This case is approved: approve by officer at ") for i in at.info)
    assert next(b for b in at.form_submit_button if b.label == "Record decision").disabled
    assert table_with(at, "outcome")["by"].tolist() == ["officer"]


def test_managers_see_the_queue_read_only(inst) -> None:
    manager = inst.users["manager"]
    at = page_as(manager, "pages/review_queue.py")
    no_exception(at)
    assert any("Read-only" in i.value for i in at.info)
    assert all(b.key != "rq_next" for b in at.button)
    case_id = table_with(at, "case")["case"].tolist()[-1]
    at.selectbox(key="rq_choice").set_value(case_id)
    at.button(key="rq_open").click().run()
    no_exception(at)
    assert wbs(manager).review.case(case_id).claim is None  # no claim
    assert next(b for b in at.form_submit_button if b.label == "Record decision").disabled
    assert at.get("plotly_chart")
