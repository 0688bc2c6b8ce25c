"""New application, portfolio, drift, model & strategy, and the audit trail."""

from __future__ import annotations

import json
import re
from datetime import date

import pytest
from app_support import PASSWORD, app_as, no_exception, page_as, plain, table_with, texts
from sqlalchemy import func, select

from finflow_core.formatting import MISSING
from finflow_core.store.lending_tables import applications, strategies


def metric(at, label: str) -> str:  # type: ignore[no-untyped-def]
    return next(m.value for m in at.metric if m.label == label)


def fill_application(at, app_id: str, **over: object):  # type: ignore[no-untyped-def]
    values = {
        "annual_revenue": 850_000.0, "loan_amount": 120_000.0, "term_months": 36, "interest_rate": 11.0,
        "credit_score": 705, "years_in_business": 8.0, "employees": 12, "existing_debt": 40_000.0,
        "debt_to_income": 0.3, "recent_delinquencies": 0,
    } | over
    at.text_input(key="na_application_id").input(app_id)
    at.date_input(key="na_application_date").set_value(date(2026, 11, 2))
    for name, value in values.items():
        at.number_input(key=f"na_{name}").set_value(value)
    at.selectbox(key="na_industry").set_value("retail")
    at.selectbox(key="na_region").set_value("west")
    at.selectbox(key="na_collateral").set_value("full")
    return at.form_submit_button[0].click().run()


def stored_count(inst, external_id: str) -> int:  # type: ignore[no-untyped-def]
    with inst.store.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(applications)
                                .where(applications.c.external_id == external_id)).scalar_one())


def test_a_new_application_gets_its_decision_at_once(inst) -> None:
    at = page_as(inst.users["officer"], "pages/new_application.py")
    no_exception(at)
    numbers = {n.key: n for n in at.number_input}
    assert numbers["na_credit_score"].min == 300 and numbers["na_credit_score"].max == 850
    assert at.selectbox(key="na_region").options == ["northeast", "southeast", "midwest", "southwest", "west"]
    at = fill_application(at, "WEB-0001", credit_score=480, recent_delinquencies=4, debt_to_income=2.5)
    no_exception(at)
    shown = texts(at)
    assert "Decision: **" in shown
    assert metric(at, "Probability of default").endswith("%")
    assert metric(at, "Time taken").endswith(" ms")
    assert stored_count(inst, "WEB-0001") == 1
    result = at.session_state["na_result"]
    # a weak applicant: not approved, so the decision comes with its reasons
    assert result.valid and result.decision in ("review", "decline")
    assert result.reasons
    for r in result.reasons:
        assert r["text"] in shown


def test_an_invalid_application_is_explained_and_not_stored(inst) -> None:
    at = page_as(inst.users["officer"], "pages/new_application.py")
    at.text_input(key="na_application_id").input("WEB-BAD")
    at = at.form_submit_button[0].click().run()
    no_exception(at)
    assert plain(at.error[0].value).startswith("The application does not pass the quality gate")
    assert "loan_amount" in table_with(at, "column")["column"].tolist()
    assert stored_count(inst, "WEB-BAD") == 0


def test_portfolio_kpis_match_the_core_figures(inst) -> None:
    manager = inst.users["manager"]
    at = page_as(manager, "pages/portfolio.py")
    no_exception(at)
    k = inst.wb("manager").portfolio.summary().kpis()
    assert metric(at, "Applications") == f"{k['applications']:,}"
    assert metric(at, "Approved") == f"{k['approved']:,}"
    assert metric(at, "Declined") == f"{k['declined']:,}"
    assert metric(at, "Awaiting a decision") == f"{k['pending'] + k['referred']:,}"
    assert k["applications"] == k["approved"] + k["declined"] + k["awaiting_decision"]  # the tiles add up
    assert metric(at, "Automation rate") == f"{k['automation_rate']:.1%}"
    assert metric(at, "ROI on approved amount") == f"{k['roi']:.1%}"
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [c["layout"]["title"]["text"] for c in charts]
    assert "Probability of default" in titles and "Risk distribution by band and status" in titles
    hist = next(c for c in charts if c["layout"]["title"]["text"] == "Probability of default")
    assert sum(hist["data"][0]["y"]) == k["applications"]
    assert {b.label for b in at.get("download_button")} == {"Weekly trends (CSV)", "Breakdown shown (CSV)",
                                                            "Weekly report (HTML)", "Weekly report (PDF)"}


def test_portfolio_and_queue_agree_on_what_is_pending_review(inst) -> None:
    officer = inst.wb("officer")
    if not officer.review.counts().get("referred"):
        case = officer.review.queue(limit=5000).rows[-1].id  # the newest: the oldest stay for other tests
        officer.review.open(case)
        officer.review.decide(case, "refer", "needs the latest accounts", "asked the broker")
    counts = officer.review.counts()
    queue = page_as(inst.users["officer"], "pages/review_queue.py")
    portfolio = page_as(inst.users["manager"], "pages/portfolio.py")
    queue_pending = next(m.value for m in queue.metric if m.label == "Pending review")
    assert queue_pending == f"{counts['pending']:,}"
    assert "Pending review" not in [m.label for m in portfolio.metric]  # no other number under that name
    tile = next(m for m in portfolio.metric if m.label == "Awaiting a decision")
    assert tile.value == f"{counts['pending'] + counts['referred']:,}"
    assert tile.proto.delta == f"{queue_pending} pending review · {counts['referred']:,} referred"


def test_portfolio_filters_narrow_the_figures(inst) -> None:
    manager = inst.users["manager"]
    at = page_as(manager, "pages/portfolio.py")
    total = int(metric(at, "Applications").replace(",", ""))
    at.multiselect(key="pf_seg_region").set_value(["west"]).run()
    no_exception(at)
    west = int(metric(at, "Applications").replace(",", ""))
    assert 0 < west < total
    from finflow_core.services.portfolio import PortfolioFilter

    expected = inst.wb("manager").portfolio.summary(
        PortfolioFilter(segments={"region": ("west",)})).kpis()["applications"]
    assert west == expected


def test_drift_shows_the_status_with_advice_and_psi_bars(inst) -> None:
    at = page_as(inst.users["analyst"], "pages/drift.py")
    no_exception(at)
    from finflow_core.lending.drift import ADVICE

    latest = next(r for r in inst.wb("analyst").drift.runs() if r.status != "insufficient_data")
    banner = [*at.success, *at.warning, *at.error]
    assert len(banner) == 1 and ADVICE[latest.status] in banner[0].value
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    psi = next(c for c in charts if c["layout"]["title"]["text"] == "PSI of the score and each feature")
    lines = sorted(s["x0"] for s in psi["layout"]["shapes"])
    assert lines == [inst.config.monitoring.psi_watch, inst.config.monitoring.psi_alert]
    assert len(psi["data"][0]["x"]) == 1 + len(latest.features)
    at.selectbox(key="dr_column").set_value("credit_score").run()
    dist = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any(c["layout"]["title"]["text"].startswith("Credit score: training baseline") for c in dist)


def current_edges(inst) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    s = inst.wb("manager").models.active_strategy()
    return s.low_edge, s.high_edge


def strategy_rows(inst) -> int:  # type: ignore[no-untyped-def]
    with inst.store.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(strategies)).scalar_one())


def test_what_if_moves_the_figures_but_changes_nothing(inst) -> None:
    before, rows = current_edges(inst), strategy_rows(inst)
    at = page_as(inst.users["analyst"], "pages/model.py")
    no_exception(at)
    assert all(f.key != "md_save" for f in at.get("form")) and not any(
        b.label.startswith("Save edges") for b in at.form_submit_button)
    rate_before = metric(at, "Automation rate")
    at.slider(key="md_edges").set_range(2.0, 90.0).run()
    no_exception(at)
    assert metric(at, "Automation rate") != rate_before
    assert current_edges(inst) == before and strategy_rows(inst) == rows


def test_a_manager_saves_new_band_edges(inst) -> None:
    at = page_as(inst.users["manager"], "pages/model.py")
    at.slider(key="md_edges").set_range(8.0, 40.0).run()
    at.text_input(key="md_note").input("tighter review band")
    next(b for b in at.form_submit_button if b.label.startswith("Save edges")).click().run()
    no_exception(at)
    assert current_edges(inst) == (0.08, 0.4)
    assert any("Saved band edges 8.0% / 40.0%" in plain(s.value) for s in at.success)


def test_model_page_shows_card_metrics_roc_profit_curve_and_importance(inst) -> None:
    at = page_as(inst.users["manager"], "pages/model.py")
    no_exception(at)
    card = inst.wb("manager").models.card()
    assert metric(at, "AUC") == f"{card['metrics_out_of_fold']['auc']:.3f}"
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert titles[0].startswith("ROC curve") and "Out-of-fold profit by approval cut-off" in titles
    assert "What drives the model overall (mean |SHAP|)" in titles
    assert not at.file_uploader  # managers do not train


def test_audit_verify_shows_the_result_and_search_finds_an_application(inst) -> None:
    at = page_as(inst.users["manager"], "pages/audit.py")
    no_exception(at)
    at.button(key="au_verify").click().run()
    no_exception(at)
    results = [s.value for s in at.success]
    assert any(r.startswith("Audit chain intact:") for r in results)  # said once, not twice
    assert any(r.startswith("Decisions match their seals and the audit trail: ") for r in results)

    at.text_input(key="au_actor").input("system").run()
    assert set(table_with(at, "user")["user"]) == {"system"}
    with inst.store.connect() as conn:
        external = conn.execute(select(applications.c.external_id).limit(1)).scalar_one()
    at.text_input(key="au_actor").input("")
    at.text_input(key="au_application").input(external).run()
    no_exception(at)
    trail = table_with(at, "source")
    assert "Scored" in trail["action"].tolist()
    assert any(b.label == "Download this application's trail (CSV)" for b in at.get("download_button"))


def test_audit_details_read_as_words_and_the_record_as_stored_is_beside_them(inst) -> None:
    """No raw tokens (``purpose: sign_in``, snake_case keys, hashes) in the columns people read;
    the exact record (action code and canonical JSON) in its own column."""
    inst.gate.authenticate("analyst", PASSWORD)  # a sign-in entry, whatever ran before
    at = page_as(inst.users["manager"], "pages/audit.py")
    no_exception(at)
    table = table_with(at, "details")
    assert list(table.columns)[-2:] == ["details", "record as stored"]
    signed_in = table[table["action"] == "Signed in"]
    assert len(signed_in) and set(signed_in["details"]) == {"At sign-in"}
    assert signed_in["record as stored"].iloc[0] == 'login {"purpose":"sign_in"}'
    assert not re.search(r"_", " ".join(table["action"]))
    for details in table["details"]:
        if details == MISSING:  # nothing but technical fields: the record as stored has them
            continue
        for part in details.split("; "):
            label = part.split(": ", 1)[0]
            assert "_" not in label and label[:1].isupper(), details  # a label, not a key
        assert not re.search(r"sign_in|rows_in|expires at|row seal|sha256|[0-9a-f]{32}", details), details
    uploaded = table[table["action"] == "Batch uploaded"]["details"].tolist()
    assert uploaded and all(re.fullmatch(r"File: .+; Rows in: [\d,]+; Valid: [\d,]+; Quarantined: [\d,]+; "
                                         r"From: an (uploaded file|application typed in)", u) for u in uploaded), uploaded
    for record in table["record as stored"]:
        code, raw = record.split(" ", 1)
        assert re.fullmatch(r"[a-z_]+", code) and isinstance(json.loads(raw), dict)


def test_admin_sees_the_audit_page_but_an_officer_cannot(inst) -> None:
    at = page_as(inst.users["admin"], "pages/audit.py")
    no_exception(at)
    assert "Audit trail" in texts(at) and len(table_with(at, "seq")) > 0
    officer = app_as(inst.users["officer"])
    no_exception(officer)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        officer.switch_page("pages/audit.py")  # not registered for the role
    assert "Audit trail" not in texts(officer)
