"""Performance: outcome files previewed then loaded (a bad one stores nothing), vintages with
their lights, fairness by segment, and nothing at all for a role without access. Its own
installation (it records outcomes)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pandas as pd
import pytest
from app_support import (
    ROOT,
    TIMEOUT,
    Installation,
    app_as,
    data_elements,
    installed,
    no_exception,
    page_as,
    plain,
    table_with,
    texts,
)
from streamlit.testing.v1 import AppTest

from finflow_app.performance_tables import LIGHTS
from finflow_core.store.outcomes import outcome_counts

PAGE = "pages/performance.py"


@pytest.fixture(scope="module")
def perf_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    with installed(tmp_path_factory.mktemp("finflow_perf_home")) as inst:
        yield inst


@pytest.fixture
def pi(perf_home: Installation, monkeypatch: pytest.MonkeyPatch) -> Installation:
    monkeypatch.delenv("FINFLOW_DATABASE_URL", raising=False)
    for k in ("FINFLOW_HOME", "FINFLOW_CONFIG", "FINFLOW_SECRET_KEY"):
        monkeypatch.setenv(k, perf_home.env[k])
    return perf_home


def stored_outcomes(inst: Installation) -> int:
    with inst.store.connect() as conn:
        return outcome_counts(conn)["outcomes"]


def batch_ids(inst: Installation) -> list[str]:
    return sorted(b.id for b in inst.wb("manager").batches.list())


def drawn(inst: Installation, batch: str, seed: int = 3) -> pd.DataFrame:
    return inst.wb("analyst").outcomes.simulate([batch], as_of=date.today(), seed=seed)


def with_outcome(inst: Installation, batch: str) -> int:
    report = inst.wb("manager").performance.vintages()
    return next(v.with_outcome for v in report.vintages if v.vintage == batch)


def metric(at, label: str) -> str:  # type: ignore[no-untyped-def]
    return next(m.value for m in at.metric if m.label == label)


def test_an_analyst_previews_an_outcome_file_then_loads_it(pi) -> None:
    batch = batch_ids(pi)[0]
    outcomes = drawn(pi, batch)
    before = stored_outcomes(pi)
    at = page_as(pi.users["analyst"], PAGE)
    no_exception(at)
    assert "Performance" in [t.value for t in at.title]
    if before == 0:
        assert "No outcomes loaded yet: load a file of outcomes above" in texts(at)
    at.file_uploader(key="pf_outcome_file").set_value(
        ("outcomes_week_1.csv", outcomes.to_csv(index=False).encode(), "text/csv")).run()
    no_exception(at)
    assert metric(at, "Ready to record") == f"{len(outcomes):,}"
    assert metric(at, "Issues") == "0"
    assert stored_outcomes(pi) == before  # the preview stores nothing

    at.button(key="pf_load").click().run()
    no_exception(at)
    defaults = int((outcomes["defaulted"] == "yes").sum())
    assert any(s.value.startswith(f"Loaded {len(outcomes):,} outcome(s) from outcomes\\_week\\_1.csv: "
                                  f"{defaults:,} default(s)") for s in at.success), [s.value for s in at.success]
    assert stored_outcomes(pi) == before + len(outcomes)
    vintages = table_with(at, "observed default rate").set_index("vintage")
    assert vintages.loc[batch, "with outcome"] == len(outcomes) == with_outcome(pi, batch)
    assert vintages.loc[batch, "observed default rate"].endswith("%")
    assert vintages.loc[batch, "light"] in {LIGHTS[k] for k in LIGHTS} - {"⚪ no data"}
    at.run()  # the same file still in the uploader: reported as loaded, not loaded again
    no_exception(at)
    assert stored_outcomes(pi) == before + len(outcomes)
    assert not [e.value for e in at.error]


def test_a_file_without_the_outcome_columns_is_rejected_and_stores_nothing(pi) -> None:
    before = stored_outcomes(pi)
    at = page_as(pi.users["analyst"], PAGE)
    at.file_uploader(key="pf_outcome_file").set_value(
        ("loans.csv", b"application_id,status\nA-1,paid\n", "text/csv")).run()
    no_exception(at)
    [err] = [e.value for e in at.error]
    assert err.startswith("File rejected, nothing was stored: loans.csv: not an outcome file: missing "
                          "column(s) defaulted, observed\\_on")
    assert not [b for b in at.button if b.key == "pf_load"]
    assert stored_outcomes(pi) == before


def test_quarantined_outcome_rows_are_shown_and_nothing_can_be_loaded(pi) -> None:
    batch = batch_ids(pi)[-1]
    good = drawn(pi, batch, seed=5).head(20)
    bad = pd.concat([good, pd.DataFrame([
        {"application_id": "NOT-STORED", "defaulted": "no", "observed_on": date.today().isoformat()},
        {"application_id": good.iloc[0]["application_id"], "defaulted": "maybe",
         "observed_on": date.today().isoformat()},
    ])], ignore_index=True)
    before = stored_outcomes(pi)
    at = page_as(pi.users["analyst"], PAGE)
    at.file_uploader(key="pf_outcome_file").set_value(
        ("bad_outcomes.csv", bad.to_csv(index=False).encode(), "text/csv")).run()
    no_exception(at)
    issues = table_with(at, "rule")
    assert list(issues.columns[:6]) == ["row", "line", "application id", "column", "rule", "value"]
    unknown = issues[issues["rule"] == "unknown_application"]
    assert unknown["row"].tolist() == [21] and unknown["value"].tolist() == ["NOT-STORED"]
    assert "outcome" in set(issues["rule"]) and "maybe" in issues["value"].tolist()
    said = next(plain(e.value) for e in at.error if "nothing can be stored from this file" in e.value)
    assert "no stored application has this id ×1" in said and "must say whether the loan defaulted ×1" in said
    assert "unknown_application" not in said  # the rules in words, not their codes
    assert not [b for b in at.button if b.key == "pf_load"]
    assert stored_outcomes(pi) == before


def test_a_manager_sees_vintages_and_fairness_by_segment(pi) -> None:
    batch = batch_ids(pi)[1]
    if with_outcome(pi, batch) == 0:
        pi.wb("analyst").outcomes.load(drawn(pi, batch, seed=9).to_csv(index=False).encode(), name="o.csv")
    at = page_as(pi.users["manager"], PAGE)
    no_exception(at)
    assert not [b for b in at.button if b.key == "pf_load"] and not at.file_uploader  # analysts load
    report = pi.wb("manager").performance.vintages()
    vintages = table_with(at, "observed default rate")
    assert vintages["vintage"].tolist() == [v.vintage for v in report.vintages]
    row = vintages.set_index("vintage").loc[batch]
    v = next(v for v in report.vintages if v.vintage == batch)
    assert row["light"] == LIGHTS[v.light] and row["with outcome"] == v.with_outcome > 0
    assert "🟢 green: as predicted" in texts(at)  # the legend
    from test_figures_read_well import screen_problems, table_problems

    assert screen_problems(at) + table_problems(at) == []  # with outcomes: figures read as figures

    segment = pi.config.segments[0]
    fairness = table_with(at, "impact ratio")
    expected = pi.wb("manager").performance.fairness(segment)
    assert fairness["group"].tolist() == [g.group for g in expected.groups]
    assert fairness["decided"].tolist() == [g.decided for g in expected.groups]
    assert fairness["status"].str.contains("reference").sum() == 1
    assert "four-fifths threshold (80%)" in texts(at)

    other = pi.config.segments[1]
    at.selectbox(key="pf_segment").set_value(other).run()
    no_exception(at)
    groups = table_with(at, "impact ratio")["group"].tolist()
    assert groups == [g.group for g in pi.wb("manager").performance.fairness(other).groups] != []


def test_the_approved_only_caveat_is_said_once(pi) -> None:
    from finflow_core.services.performance import APPROVED_ONLY

    at = page_as(pi.users["manager"], PAGE)
    no_exception(at)
    assert [plain(c.value) for c in at.caption].count(APPROVED_ONLY) == 1


def test_an_officer_cannot_open_the_page_nor_deep_link_it(pi) -> None:
    officer = pi.users["officer"]
    at = app_as(officer)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(PAGE)  # not in the officer's navigation
    direct = AppTest.from_file(str(ROOT / PAGE), default_timeout=TIMEOUT)
    direct.session_state["ff_user"] = officer
    direct.run()
    no_exception(direct)
    assert data_elements(direct) == 0 and not direct.title
    assert "Your role does not give access to this page." in [w.value for w in direct.warning]


def test_the_page_asks_for_the_outcome_layout_the_config_declares(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """A lender whose servicing export says LoanNr_ChkDgt / MIS_Status (config outcomes:) was
    told to upload application_id, defaulted, observed_on, which its file does not have."""
    def layout(raw: dict) -> None:
        raw["outcomes"] = {"id_column": "loan_ref", "defaulted_column": "status",
                           "observed_column": "as_of", "defaulted_words": ["CHGOFF"],
                           "repaid_words": ["P I F"]}

    with installed(tmp_path_factory.mktemp("finflow_layout_home"), layout) as inst:
        batch = batch_ids(inst)[0]
        outcomes = drawn(inst, batch)
        assert {"loan_ref", "status", "as_of"} <= set(outcomes.columns)
        assert set(outcomes["status"]) <= {"CHGOFF", "P I F"}
        at = page_as(inst.users["analyst"], PAGE)
        no_exception(at)
        shown = texts(at)
        assert "A CSV with one funded loan per row: loan_ref, status, as_of" in shown
        assert "(loan_ref, status, as_of) to compare" in shown
        assert "application_id" not in shown
        at.file_uploader(key="pf_outcome_file").set_value(
            ("servicing.csv", outcomes.to_csv(index=False).encode(), "text/csv")).run()
        no_exception(at)
        assert "issue(s) in" not in texts(at)
