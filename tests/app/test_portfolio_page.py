"""Portfolio week by week (weeks as categories, gaps that break lines, typed-in applications
apart) and typed-in applications that are one application per id. Its own installation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import pytest
from app_support import Installation, installed, no_exception, page_as, plain, table_with, texts
from sqlalchemy import func, select

from finflow_core.errors import Conflict
from finflow_core.lending.synthetic import generate_applications
from finflow_core.store.lending_tables import applications

FORM = {
    "application_date": "2027-06-08", "annual_revenue": 850_000.0, "loan_amount": 120_000.0, "term_months": 36,
    "interest_rate": 0.11, "credit_score": 705, "years_in_business": 8.0, "employees": 12,
    "existing_debt": 40_000.0, "debt_to_income": 0.3, "recent_delinquencies": 0, "industry": "retail",
    "region": "west", "collateral": "full",
}


@pytest.fixture(scope="module")
def pf_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    with installed(tmp_path_factory.mktemp("finflow_portfolio_home")) as inst:
        yield inst


@pytest.fixture
def pi(pf_home: Installation, monkeypatch: pytest.MonkeyPatch) -> Installation:
    monkeypatch.delenv("FINFLOW_DATABASE_URL", raising=False)
    for k in ("FINFLOW_HOME", "FINFLOW_CONFIG", "FINFLOW_SECRET_KEY"):
        monkeypatch.setenv(k, pf_home.env[k])
    return pf_home


def charts(at) -> dict[str, dict]:  # type: ignore[no-untyped-def, type-arg]
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return {s["layout"]["title"]["text"]: s for s in specs}


def values(array) -> list:  # type: ignore[no-untyped-def, type-arg]
    """A Plotly array as a list (Plotly sends numeric arrays as base64 typed arrays); NaN is None."""
    if isinstance(array, dict) and "bdata" in array:
        import base64

        import numpy as np

        raw = np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
        return [None if v != v else v.item() for v in raw]
    return list(array)


def stored(pi, external_id: str) -> int:  # type: ignore[no-untyped-def]
    with pi.store.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(applications)
                                .where(applications.c.external_id == external_id)).scalar_one())


def test_one_batch_selected_shows_one_week_as_a_category_not_a_millisecond_axis(pi) -> None:
    at = page_as(pi.users["manager"], "pages/portfolio.py")
    first = pi.wb("manager").batches.list()[-1]  # the oldest sample week
    at.multiselect(key="pf_batches").set_value([first.id]).run()
    no_exception(at)
    c = charts(at)
    for title in ("Week by week: decisions", "Week by week: automation rate and ROI",
                  "Week by week: expected profit"):
        axis = c[title]["layout"]["xaxis"]
        assert axis["type"] == "category" and axis["categoryarray"] == [first.week_start], title
    bar = c["Week by week: expected profit"]["data"][0]
    assert values(bar["x"]) == [first.week_start] and bar["width"] == 0.3  # one narrow bar, not the whole plot
    assert "One week selected" in texts(at)


def test_weeks_months_apart_are_not_joined_by_a_line(pi) -> None:
    later = generate_applications(400, seed=555, start=date(2027, 3, 1), days=7).drop(columns=["default"])
    pi.wb("analyst").batches.run(later.to_csv(index=False).encode("utf-8"), name="week_march.csv")
    at = page_as(pi.users["manager"], "pages/portfolio.py")
    no_exception(at)
    counts = charts(at)["Week by week: decisions"]
    weeks = counts["layout"]["xaxis"]["categoryarray"]
    gap = next(w for w in weeks if w.endswith("weeks without data"))
    line = next(t for t in counts["data"] if t["name"] == "applications")
    x, y = values(line["x"]), values(line["y"])
    i = x.index(gap)
    assert y[i] is None and line["connectgaps"] is False  # the line breaks at the gap
    assert x[i - 1] < "2026-12-01" < "2027-03-01" <= x[i + 1]


def test_a_week_of_two_typed_in_applications_does_not_drag_the_trends(pi) -> None:
    officer = pi.wb("officer")
    for i, score in enumerate((705, 640)):
        officer.applications.submit({**FORM, "application_id": f"TYPED-{i}", "credit_score": score})
    at = page_as(pi.users["manager"], "pages/portfolio.py")
    no_exception(at)
    k = pi.wb("manager").portfolio.summary().kpis()
    assert at.metric[0].value == f"{k['applications']:,}"  # totals count them
    lines = {t["name"]: t for t in charts(at)["Week by week: decisions"]["data"]}
    rates = {t["name"]: t for t in charts(at)["Week by week: automation rate and ROI"]["data"]}
    assert "2027-06-07" not in values(lines["applications"]["x"])  # not a week of the trend
    assert min(y for y in values(lines["applications"]["y"]) if y is not None) >= 400
    assert max(y for y in values(rates["automation rate"]["y"]) if y is not None) < 1.0
    typed = table_with(at, "week_start")
    assert typed["week_start"].tolist()[-1] != "2027-06-07"  # the weekly table: batches only
    assert "**Typed in one by one:** 2 application(s)" in texts(at)
    tables = [d.value for d in at.dataframe if "week_start" in d.value.columns]
    assert tables[-1]["week_start"].tolist() == ["2027-06-07"] and tables[-1]["applications"].tolist() == [2]


def test_the_same_id_with_other_figures_is_refused_naming_the_stored_one(pi) -> None:
    officer = pi.wb("officer")
    first = officer.applications.submit({**FORM, "application_id": "DUP-1"})
    assert first.valid and first.earlier is None
    with pytest.raises(Conflict) as refused:
        officer.applications.submit({**FORM, "application_id": "DUP-1", "loan_amount": 480_000.0})
    message = refused.value.message
    assert message.startswith("application 'DUP-1' is already stored with other figures (typed in on ")
    assert "by officer" in message and "was not stored" in message
    assert stored(pi, "DUP-1") == 1


def test_an_identical_resubmission_says_it_was_decided_and_shows_that_decision(pi) -> None:
    from test_oversight import fill_application

    at = page_as(pi.users["officer"], "pages/new_application.py")
    at = fill_application(at, "SAME-1")
    no_exception(at)
    first = at.session_state["na_result"]
    assert first.earlier is None and stored(pi, "SAME-1") == 1
    again = page_as(pi.users["officer"], "pages/new_application.py")
    again = fill_application(again, "SAME-1")
    no_exception(again)
    result = again.session_state["na_result"]
    assert result.earlier is not None and result.stored_id == first.stored_id
    info = plain(again.info[0].value)
    assert info.startswith("This application was already submitted on ") and "nothing new was stored" in info
    assert f"Decision: **{ {'approve': 'Approve', 'review': 'Manual review', 'decline': 'Decline'}[first.decision]}**" \
        in texts(again)
    assert stored(pi, "SAME-1") == 1

    changed = page_as(pi.users["officer"], "pages/new_application.py")
    changed = fill_application(changed, "SAME-1", loan_amount=300_000.0)
    no_exception(changed)
    assert [plain(e.value).split(" (")[0] for e in changed.error] == [
        "application 'SAME-1' is already stored with other figures"]
    assert stored(pi, "SAME-1") == 1
