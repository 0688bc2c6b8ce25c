"""The review desk: the queue (click a row, the service-level clock, today's count), a case
(reasons, the PD waterfall, formatted figures, deciding), four eyes, and the manager's view."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from app_support import no_exception, page_as, table_with, texts
from sqlalchemy import text

TABLE = "rq_table"


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


def click_row(at, case_id: int):  # type: ignore[no-untyped-def]
    """Click the queue row of ``case_id`` (what st.dataframe's row selection sends)."""
    row = table_with(at, "case")["case"].tolist().index(case_id)
    at.session_state[TABLE] = {"selection": {"rows": [row], "columns": []}}
    return at.run()


def decide(at, case_id: int, outcome: str, codes: list[str] | None = None, reason: str = "",  # type: ignore[no-untyped-def]
           note: str = ""):
    if codes is not None:
        at.button_group(key=f"dec_codes_{case_id}").set_value(codes)
    at.text_input(key=f"dec_reason_{case_id}").input(reason)
    at.text_area(key=f"dec_note_{case_id}").input(note)
    label = {"approve": "Approve", "decline": "Decline", "refer": "Refer"}[outcome]
    return next(b for b in at.form_submit_button if b.label == label).click().run()


def shown(at) -> str:  # type: ignore[no-untyped-def]
    """What the run shows, as a person reads it (markdown escapes removed)."""
    return texts(at).replace("\\", "")


def test_the_queue_shows_how_many_wait_oldest_first(inst) -> None:
    at = page_as(inst.users["officer"], "pages/review_queue.py")
    no_exception(at)
    counts = inst.wb("officer").review.counts()
    assert next(m.value for m in at.metric if m.label == "Pending review") == f"{counts['pending']:,}"
    table = table_with(at, "case")
    assert len(table) == 25  # paginated
    assert table["case"].tolist() == sorted(table["case"].tolist())
    assert table["case"].tolist() == pending_ids(inst)[:25]
    assert set(table["service level"].str.extract(r"^(due in|overdue)")[0]) == {"due in"}
    at.radio(key="rq_order").set_value("amount").run()
    amounts = table_with(at, "case")["amount"].tolist()
    assert amounts == sorted(amounts, reverse=True)


def test_clicking_a_row_opens_and_claims_its_case(inst) -> None:
    officer = inst.users["officer"]
    at = page_as(officer, "pages/review_queue.py")
    case_id = table_with(at, "case")["case"].tolist()[3]
    at = click_row(at, case_id)
    no_exception(at)
    case = wbs(officer).review.case(case_id)
    assert [t.value for t in at.title] == [f"Case {case.external_id}"]
    assert case.claim is not None and case.claim.claimed_by == "officer"
    at.button(key="rq_back").click().run()  # back: the queue again, nothing still selected
    assert [t.value for t in at.title] == ["Review queue"]
    assert wbs(officer).review.case(case_id).claim is None  # given back
    assert at.session_state[TABLE]["selection"]["rows"] == []


def test_an_officer_works_a_case_to_a_decision_and_it_leaves_the_queue(inst) -> None:
    officer = inst.users["officer"]
    at = page_as(officer, "pages/review_queue.py")
    before = wbs(officer).review.today().decided
    first = wbs(officer).review.next_case()
    at = open_next(at)
    no_exception(at)
    case = wbs(officer).review.case(first)
    assert case.claim is not None and case.claim.claimed_by == "officer"  # opening claimed it
    assert [t.value for t in at.title] == [f"Case {case.external_id}"]
    for reason in case.reasons:
        assert reason["text"] in shown(at)

    # a decline without a reason is refused and nothing is recorded
    at = decide(at, first, "decline")
    assert [e.value for e in at.error] == ["a decline needs a reason: pick a reason code or write one"]
    assert wbs(officer).review.case(first).status == "pending"

    codes = [case.reasons[0]["text"], case.reasons[-1]["text"]]
    at = decide(at, first, "decline", codes=codes)
    no_exception(at)
    after = wbs(officer).review.case(first)
    assert after.status == "declined"
    assert after.decisions[-1].decided_by == "officer"
    assert after.decisions[-1].reason == "; ".join(dict.fromkeys(codes))
    assert first not in pending_ids(inst)
    assert f"Case {case.external_id}: decline recorded." in [s.value for s in at.success]
    # the next case opened by itself
    nxt = at.session_state["rq_case"]
    assert nxt != first and nxt in pending_ids(inst)
    assert [t.value for t in at.title] == [f"Case {wbs(officer).review.case(nxt).external_id}"]

    # approving needs no reason; a written reason is kept
    at = decide(at, nxt, "approve", reason="strong cash flow")
    no_exception(at)
    decided = wbs(officer).review.case(nxt)
    assert decided.status == "approved" and decided.decisions[-1].reason == "strong cash flow"
    assert wbs(officer).review.today().decided == before + 2
    at.button(key="rq_back").click().run()
    assert next(m.value for m in at.metric if m.label == "You decided today") == str(before + 2)


def test_the_waterfall_is_in_probability_and_shows_every_reason(inst) -> None:
    officer = inst.users["officer"]
    at = open_next(page_as(officer, "pages/review_queue.py"))
    case = wbs(officer).review.case(at.session_state["rq_case"])
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    bars, values = spec["data"][0], spec["data"][1]
    assert bars["type"] == "waterfall" and bars["orientation"] == "h"
    assert bars["y"][0].startswith("Base rate") and bars["y"][-1] == "This case"
    assert bars["measure"][0] == "absolute" and bars["measure"][-1] == "total"
    # from the base rate, the steps end exactly at the case's PD
    assert bars["x"][0] + sum(bars["x"][1:-1]) == pytest.approx(case.probability, abs=1e-9)
    assert 0 < bars["x"][0] < 1 and spec["layout"]["xaxis"]["tickformat"] == ".0%"
    labels = [re.sub(r"</?b>", "", y) for y in bars["y"]]
    for reason in case.reasons:  # every reason code has a bar of its own, in bold
        label = inst.config.feature_display(reason["feature"])
        bold = [y for y in bars["y"] if y.startswith(f"<b>{label} = ")]
        assert len(bold) == 1, (label, labels)
    assert not any(y.endswith(" other features") and y.startswith("<b>") for y in bars["y"])
    # values stand in their own column right of every bar: no label covers a value
    assert values["mode"] == "text" and values["y"] == bars["y"]
    assert len(set(values["x"])) == 1 and values["x"][0] > max(
        case.probability, bars["x"][0], *_path(bars["x"]))
    assert values["text"][0].endswith("%") and values["text"][-1] == _pd(case.probability)
    assert all(t.endswith(" pts") for t in values["text"][1:-1])
    assert "scaled so the bars run from the base rate" in shown(at)


def data_value(at, label: str) -> str:  # type: ignore[no-untyped-def]
    return str(table_with(at, "field").set_index("field")["value"][label])


def _path(xs: list[float]) -> list[float]:
    out, run = [], 0.0
    for x in xs[:-1]:
        run += x
        out.append(run)
    return out


def _pd(p: float) -> str:
    from finflow_core.formatting import probability

    return probability(p)


def test_figures_on_the_case_read_as_a_person_reads_them(inst) -> None:
    officer = inst.users["officer"]
    at = open_next(page_as(officer, "pages/review_queue.py"))
    case = wbs(officer).review.case(at.session_state["rq_case"])
    metrics = {m.label: m.value for m in at.metric}
    assert re.fullmatch(r"\d{1,2}\.\d%|<0\.1%|>99\.9%", metrics["Probability of default"])
    assert metrics["Loan amount"] == (f"USD {case.amount:,.0f}" if case.amount < 1e6 else
                                      f"USD {case.amount / 1e6:.1f}m")
    assert data_value(at, "Existing debt").startswith("USD ")  # declared unit: money
    assert data_value(at, "Loan term").endswith(" months")
    assert metrics["Expected profit"].startswith(("USD ", "-USD "))
    assert metrics["Model suggests"] in ("Approve", "Decline")
    assert any(c.value.startswith("Pending: waiting ") for c in at.caption)
    data = table_with(at, "field").set_index("field")["value"]
    assert re.fullmatch(r"\d{1,2}\.\d\d%", data["Interest rate"])  # not 0.1928
    assert re.fullmatch(r"USD \d{1,3}(,\d{3})*", data["Loan amount"])
    assert re.fullmatch(r"\d{1,3}(,\d{3})*", data["Credit score"])
    for reason in case.reasons:
        assert reason["feature"] not in reason["text"] or "_" not in reason["feature"]
    everything = shown(at) + " ".join(str(v) for df in at.dataframe for v in df.value.to_numpy().ravel())
    for bad in ("None", "nan", "NaT", '{"'):
        assert bad not in everything, bad
    assert re.search(r"stored \d{4}-\d\d-\d\d \d\d:\d\d;", shown(at))  # to the minute, no T


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
    other = click_row(other, case_id)
    no_exception(other)
    held = [w.value for w in other.warning]
    assert len(held) == 1 and held[0].startswith("Being reviewed by **officer** since ")
    assert all(next(b for b in other.form_submit_button if b.label == label).disabled
               for label in ("Approve", "Decline", "Refer"))
    view = wbs(inst.users["officer2"]).review.case(case_id)
    assert view.claim is not None and view.claim.claimed_by == "officer"  # not taken over
    # "Work the next case" skips the held case
    other.button(key="rq_back").click().run()
    other = open_next(other)
    assert other.session_state["rq_case"] != case_id


def test_a_decided_case_shows_who_decided_its_history_and_its_letter(inst) -> None:
    officer = inst.users["officer"]
    case_id = wbs(officer).review.next_case()
    wbs(officer).review.open(case_id)
    reason = wbs(officer).review.case(case_id).reasons[0]["text"]
    wbs(officer).review.decide(case_id, "decline", reason=reason)
    at = page_as(inst.users["officer2"], "pages/review_queue.py")
    at.session_state["rq_case"] = case_id
    at.run()
    no_exception(at)
    assert any(i.value.startswith("This case is declined: decided by officer at ") for i in at.info)
    assert next(b for b in at.form_submit_button if b.label == "Approve").disabled
    history = table_with(at, "outcome")
    assert history["by"].tolist() == ["officer"] and history["revises"].tolist() == ["–"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", history["at"].iloc[0])
    assert history["model suggested"].iloc[0] in ("approve", "decline")
    downloads = [d.proto.label for d in at.get("download_button")]
    assert downloads == ["Decline letter (PDF)", "Decline letter (HTML)"]


def test_overdue_cases_are_flagged_and_counted(inst) -> None:
    """A batch stored 30 hours ago is past the 24-hour service level."""
    first_batch = inst.wb("manager").review.queue(limit=1).rows[0].batch_id
    with inst.store.begin() as conn:
        was = conn.execute(text("SELECT uploaded_at FROM batches WHERE id = :b"), {"b": first_batch}).scalar()
        old = (datetime.now(UTC) - timedelta(hours=30)).isoformat(timespec="microseconds")
        conn.execute(text("UPDATE batches SET uploaded_at = :t WHERE id = :b"), {"t": old, "b": first_batch})
    try:
        at = page_as(inst.users["officer"], "pages/review_queue.py")
        late = inst.wb("manager").review.queue(overdue_only=True, limit=5000).total
        assert late > 0
        overdue = inst.wb("manager").review.desk().overdue  # pending and referred
        assert overdue >= late
        assert next(m.value for m in at.metric if m.label == "Overdue") == f"{overdue:,}"
        levels = table_with(at, "case")["service level"].tolist()
        assert all(v.startswith("overdue 6 h") for v in levels[: min(late, 25)])
        at.toggle(key="rq_overdue").set_value(True).run()
        assert all(v.startswith("overdue") for v in table_with(at, "case")["service level"])
        at = click_row(at, table_with(at, "case")["case"].tolist()[0])
        assert any(w.value.startswith("Pending: waiting 30 h since its batch was stored")
                   for w in at.warning)
    finally:
        with inst.store.begin() as conn:
            conn.execute(text("UPDATE batches SET uploaded_at = :t WHERE id = :b"), {"t": was, "b": first_batch})


def test_an_approval_beyond_authority_waits_for_a_second_officer(inst) -> None:
    admin, second = inst.wb("admin"), inst.users["officer"]
    admin.users.set_limit("officer2", 0)
    try:
        at = open_next(page_as(inst.users["officer2"], "pages/review_queue.py"))
        case_id = at.session_state["rq_case"]
        assert any("Your lending authority: USD 0. Approve needs a second officer (authority)" in c.value
                   for c in at.caption)
        at = decide(at, case_id, "approve", note="sound business")
        no_exception(at)
        ext = wbs(second).review.case(case_id).external_id
        assert f"Case {ext}: approve proposed; it awaits a second officer." in [w.value for w in at.warning]
        assert wbs(second).review.case(case_id).status == "pending"

        other = page_as(second, "pages/review_queue.py")
        other.radio(key="rq_status").set_value("awaiting").run()
        assert table_with(other, "case")["awaiting"].tolist()[0] == "approve by officer2"
        other = click_row(other, case_id)
        assert any(w.value.startswith("**Awaiting a second officer:** officer2 proposed to **approve**")
                   for w in other.warning)
        other = next(b for b in other.form_submit_button if b.label == "Confirm: approve").click().run()
        no_exception(other)
        done = wbs(second).review.case(case_id)
        assert done.status == "approved"
        assert (done.decisions[-1].decided_by, done.decisions[-1].proposed_by) == ("officer", "officer2")
    finally:
        admin.users.set_limit("officer2", None)


def test_managers_see_the_queue_read_only_with_the_override_rate_and_letters(inst) -> None:
    manager = inst.users["manager"]
    at = page_as(manager, "pages/review_queue.py")
    no_exception(at)
    assert any("Read-only" in i.value for i in at.info)
    assert all(b.key != "rq_next" for b in at.button)
    report = wbs(manager).review.override_rate()
    assert next(m.value for m in at.metric if m.label == "Override rate (all officers)") == (
        f"{report.overall.rate * 100:.1f}%" if report.overall.rate is not None else "–")
    assert set(table_with(at, "officer")["officer"]) == {o.officer for o in report.by_officer}
    with_declines = next(b.id for b in wbs(manager).batches.list() if wbs(manager).letters.declined_count(b.id))
    at.selectbox(key="rq_letters_batch").set_value(with_declines).run()
    assert [d.proto.label for d in at.get("download_button")] == ["Letters (PDF)", "Letters (HTML)"]
    n = wbs(manager).letters.declined_count(with_declines)
    assert any(c.value.startswith(f"{n:,} declined application(s)") for c in at.caption)
    case_id = table_with(at, "case")["case"].tolist()[-1]
    at = click_row(at, case_id)
    no_exception(at)
    assert wbs(manager).review.case(case_id).claim is None  # no claim
    assert next(b for b in at.form_submit_button if b.label == "Approve").disabled
    assert at.get("plotly_chart")


def test_an_officer_does_not_see_the_managers_view(inst) -> None:
    at = page_as(inst.users["officer"], "pages/review_queue.py")
    assert not [m for m in at.metric if m.label.startswith("Override rate")]
    assert not at.get("download_button")


def _auto_declined(inst) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with inst.store.connect() as conn:
        row = conn.execute(text("SELECT id, external_id FROM applications WHERE status = 'declined' "
                                "AND decided_kind = 'auto' ORDER BY id LIMIT 1")).one()
    return int(row[0]), str(row[1])


def test_any_application_opens_by_its_id_and_a_declined_one_offers_its_letter(inst) -> None:
    """An automatic decline never reaches the queue: the find box is how an officer gets to
    it (and to its decline letter)."""
    case_id, external = _auto_declined(inst)
    at = page_as(inst.users["officer"], "pages/review_queue.py")
    at.text_input(key="rq_find_id").input("no-such-application")
    at = next(b for b in at.form_submit_button if b.label == "Open").click().run()
    assert [w.value for w in at.warning] == ["No stored application has the id no-such-application."]
    assert [t.value for t in at.title] == ["Review queue"]

    at.text_input(key="rq_find_id").input(external)
    at = next(b for b in at.form_submit_button if b.label == "Open").click().run()
    no_exception(at)
    assert at.session_state["rq_case"] == case_id
    assert [t.value for t in at.title] == [f"Case {external}"]
    assert any(i.value.startswith("This case is declined: decided automatically by the model at ")
               for i in at.info)
    assert [d.proto.label for d in at.get("download_button")] == ["Decline letter (PDF)",
                                                                  "Decline letter (HTML)"]
    assert wbs(inst.users["officer"]).review.case(case_id).claim is None  # a decided case is not claimed
    assert table_with(at, "outcome")["kind"].tolist() == ["automatic"]
