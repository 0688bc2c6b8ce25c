"""Outcomes come back: checked, linked, recorded all or nothing, corrected only on purpose."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from store_helpers import ANALYST, MANAGER, OFFICER, Lending
from trail import audit_rows

from finflow_core.errors import PermissionDenied
from finflow_core.lending.terms import Light
from finflow_core.services.access import Principal
from finflow_core.services.context import Context
from finflow_core.services.outcomes import OutcomeFileRejected
from finflow_core.services.workbench import Workbench
from finflow_core.store.audit_chain import verify_audit

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures

AS_OF = date(2027, 9, 1)


def at(ff: Lending, who: Principal, when: datetime = datetime(2027, 9, 2, tzinfo=UTC)) -> Workbench:
    """The services as ``who`` sees them on ``when`` (outcomes are dated after the batch)."""
    from finflow_core.services.context import Context

    return Workbench(Context(ff.config, ff.store, clock=lambda: when), who)


def outcome_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def test_simulated_outcomes_load_once_and_feed_the_vintage_report(ffa: Lending) -> None:
    [batch] = ffa.batch_ids()
    analyst = at(ffa, ANALYST)
    drawn = analyst.outcomes.simulate([batch], as_of=AS_OF, seed=4)
    assert set(drawn.columns) >= {"application_id", "defaulted", "observed_on", "amount_lost"}
    load = analyst.outcomes.load(outcome_csv(drawn), name="outcomes.csv")
    assert load.rows == len(drawn) and load.defaults == int((drawn["defaulted"] == "yes").sum())
    with pytest.raises(OutcomeFileRejected) as again:  # the same outcomes again: already recorded
        analyst.outcomes.load(outcome_csv(drawn), name="outcomes.csv")
    assert set(again.value.issues["rule"]) == {"already_recorded"}

    report = at(ffa, MANAGER).performance.vintages()
    [vintage] = report.vintages
    assert vintage.vintage == batch and vintage.with_outcome == load.rows == vintage.funded
    assert vintage.auc is not None and 0.6 < vintage.auc < 0.95
    assert vintage.light in (Light.GREEN, Light.AMBER)  # the model was trained on this population
    assert vintage.realised_profit is not None and vintage.expected_default_rate > 0
    assert "approved applications, not everyone" in report.notes[0]
    entry = [e for e in audit_rows(ffa.store) if e["action"] == "outcomes_loaded"]
    assert len(entry) == 1 and entry[0]["details"]["rows"] == load.rows
    assert verify_audit(ffa.store).ok


def test_funded_loans_are_ranked_against_training_loans_scored_like_them(
        ffa_sqlite: Lending) -> None:
    """Funded loans are the low scores only: their AUC runs below the model's out-of-fold AUC
    over every applicant however well it ranks, and held to that one the ranking alert fired
    on every vintage of the public SBA register. Held to the out-of-fold AUC of training
    loans scored in the same range, a vintage ranked as at training raises none."""
    from finflow_core.lending.performance import Limits

    [batch] = ffa_sqlite.batch_ids()
    analyst = at(ffa_sqlite, ANALYST)
    analyst.outcomes.load(outcome_csv(analyst.outcomes.simulate([batch], as_of=AS_OF, seed=4)))
    report = at(ffa_sqlite, MANAGER).performance.vintages(limits=Limits(max_auc_drop=0.0))
    [vintage] = report.vintages
    assert vintage.auc is not None and vintage.auc < report.reference_auc  # every applicant's
    assert [a.message for a in report.alerts if a.kind == "ranking"] == []


def test_without_pricing_no_realised_profit_is_made_up(ffa_sqlite: Lending) -> None:
    """Taiwan credit-card file (no rate, cut-off by max_bad_rate): a repaid loan's margin is
    unknown, but the defaults' losses were summed alone as the vintage's 'realised profit'
    (-13,937,000 TWD on 1,372 funded loans), a loss-making book that no one measured."""
    import dataclasses

    from finflow_core.lending.config import Pricing

    [batch] = ffa_sqlite.batch_ids()
    unpriced = dataclasses.replace(ffa_sqlite.config, pricing=Pricing(term_column="term_months"))
    assert not unpriced.pricing.priced
    when = datetime(2027, 9, 2, tzinfo=UTC)
    analyst = Workbench(Context(unpriced, ffa_sqlite.store, clock=lambda: when), ANALYST)
    drawn = analyst.outcomes.simulate([batch], as_of=AS_OF, seed=4)
    assert (drawn["defaulted"] == "yes").any()
    analyst.outcomes.load(outcome_csv(drawn))
    [vintage] = Workbench(Context(unpriced, ffa_sqlite.store, clock=lambda: when),
                          MANAGER).performance.vintages().vintages
    assert vintage.with_outcome == len(drawn) and vintage.realised_profit is None


def test_a_downturn_shows_as_a_red_calibration_light(ffa: Lending) -> None:
    [batch] = ffa.batch_ids()
    analyst = at(ffa, ANALYST)
    drawn = analyst.outcomes.simulate([batch], as_of=date(2031, 1, 1), seed=4, downturn=1.2)
    at(ffa, ANALYST, datetime(2031, 1, 2, tzinfo=UTC)).outcomes.load(outcome_csv(drawn))
    [vintage] = at(ffa, MANAGER).performance.vintages().vintages
    assert vintage.observed_default_rate > 1.5 * vintage.expected_default_rate
    assert vintage.light == Light.RED and "more defaults" in vintage.overall.direction


def test_bad_outcome_files_change_nothing_and_say_why(ffa: Lending) -> None:
    [batch] = ffa.batch_ids()
    analyst = at(ffa, ANALYST)
    drawn = analyst.outcomes.simulate([batch], as_of=AS_OF, seed=4)
    declined = ffa.pending_ids()[0]  # pending: never funded
    with ffa.store.connect() as conn:
        from sqlalchemy import select

        from finflow_core.store.lending_tables import applications
        pending_external = conn.execute(select(applications.c.external_id)
                                        .where(applications.c.id == declined)).scalar_one()
    bad = pd.concat([drawn.head(5), pd.DataFrame([
        {"application_id": "NOT-STORED", "defaulted": "no", "observed_on": "2027-09-01"},
        {"application_id": pending_external, "defaulted": "no", "observed_on": "2027-09-01"},
        {**drawn.iloc[0].to_dict(), "defaulted": "yes" if drawn.iloc[0]["defaulted"] == "no" else "no"},
    ])], ignore_index=True)
    before = ffa.counts()
    with pytest.raises(OutcomeFileRejected) as err:
        analyst.outcomes.load(outcome_csv(bad))
    rules = set(err.value.issues["rule"])
    assert {"unknown_application", "not_funded", "conflicting_outcome"} <= rules
    assert err.value.exit_code == 4 and "nothing was recorded" in err.value.message
    assert ffa.counts() == before  # no row anywhere, not even an audit entry
    with pytest.raises(PermissionDenied):
        at(ffa, OFFICER).outcomes.load(outcome_csv(drawn))


def test_a_later_file_updates_an_outcome_only_as_an_audited_correction(ffa: Lending) -> None:
    [batch] = ffa.batch_ids()
    analyst = at(ffa, ANALYST)
    drawn = analyst.outcomes.simulate([batch], as_of=AS_OF, seed=4)
    analyst.outcomes.load(outcome_csv(drawn))
    fixed = drawn.head(3).assign(defaulted="yes", amount_lost=1000.0)
    load = analyst.outcomes.load(outcome_csv(fixed), correction_reason="servicer restated three loans")
    assert load.corrections == 3
    corrected = [e for e in audit_rows(ffa.store) if e["action"] == "outcome_corrected"]
    assert len(corrected) == 3 and all(e["details"]["reason"] == "servicer restated three loans"
                                       for e in corrected)
    frame = at(ffa, MANAGER).performance.frame()
    assert len(frame) == frame["application_id"].nunique()  # one current outcome per application
    with ffa.store.connect() as conn:
        from sqlalchemy import select

        from finflow_core.store.lending_tables import applications
        stored = dict(conn.execute(select(applications.c.external_id, applications.c.id)).all())
    now = frame.set_index("application_id")
    corrected = [stored[x] for x in fixed["application_id"]]
    assert (now.loc[corrected, "defaulted"] == 1.0).all()
    assert (now.loc[corrected, "amount_lost"] == 1000.0).all()
    assert ffa.count("outcomes") == len(drawn) + 3  # the first records stay beside the corrections


def test_a_young_vintage_is_judged_against_what_is_expected_by_now(ffa: Lending) -> None:
    """Eight months in, a loan has had about a fifth of its term to default: comparing with the
    lifetime PD would read 'fewer defaults than predicted' (red) when nothing is wrong."""
    [batch] = ffa.batch_ids()
    drawn = at(ffa, ANALYST).outcomes.simulate([batch], as_of=date(2026, 9, 1), seed=4)
    at(ffa, ANALYST, datetime(2026, 9, 2, tzinfo=UTC)).outcomes.load(outcome_csv(drawn))
    report = at(ffa, MANAGER).performance.vintages()
    [v] = report.vintages
    assert v.maturity is not None and v.maturity < 0.5
    assert v.observed_default_rate < v.expected_default_rate  # lifetime PD: not reached yet
    assert v.overall.light != Light.RED and abs(v.observed_default_rate - v.expected_to_date) < 0.03
    assert not [a for a in report.alerts if a.kind == "ranking"]  # too young to judge ranking


def test_the_cli_loads_outcomes_refuses_bad_files_and_the_monitor_exits_for_schedulers(
    ffa_sqlite: Lending, tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from store_helpers import PASSWORD

    from finflow_core.cli import main

    ffa_sqlite.users()
    monkeypatch.setenv("FINFLOW_USER", "ann.analyst")
    monkeypatch.setenv("FINFLOW_PASSWORD", PASSWORD)
    [batch] = ffa_sqlite.batch_ids()
    out = tmp_path / "outcomes.csv"
    assert main(["outcomes", "simulate", "--batch", batch, "--as-of", "2026-11-30", "--downturn", "1.5",
                 "--out", str(out)]) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(out.read_text() + "NOT-STORED,,no,2026-11-30,,0,1\n")
    capsys.readouterr()
    assert main(["outcomes", "load", "--data", str(bad), "--out", str(tmp_path / "rep")]) == 4
    err = capsys.readouterr().err
    assert "nothing was recorded" in err and "Traceback" not in err
    assert "unknown_application" in (tmp_path / "rep" / "outcome_issues.csv").read_text()
    assert ffa_sqlite.count("outcomes") == 0
    assert main(["outcomes", "load", "--data", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == ffa_sqlite.count("outcomes")
    code = main(["monitor", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 21 and any(a["kind"] == "calibration" for a in payload["performance_alerts"])


def test_an_outcome_dated_before_its_application_is_refused(ffa: Lending) -> None:
    """A servicer's file with a mistyped date (or another loan's id) said a loan defaulted
    before it was decided; months on book were clamped to 0 and the outcome was recorded."""
    [batch] = ffa.batch_ids()
    analyst = at(ffa, ANALYST)
    drawn = analyst.outcomes.simulate([batch], as_of=AS_OF, seed=4)
    with ffa.store.connect() as conn:
        from sqlalchemy import select

        from finflow_core.store.lending_tables import applications
        week = dict(conn.execute(select(applications.c.external_id, applications.c.week_start)
                                 .where(applications.c.batch_id == batch)).all())
    early = drawn.head(4).copy()
    first = str(early.iloc[0]["application_id"])
    before = (date.fromisoformat(week[first]) - timedelta(days=1)).isoformat()
    early.loc[early.index[0], "observed_on"] = before
    early.loc[early.index[1], "observed_on"] = week[str(early.iloc[1]["application_id"])]  # its week
    counts = ffa.counts()
    with pytest.raises(OutcomeFileRejected) as err:
        analyst.outcomes.load(outcome_csv(early))
    issues = err.value.issues
    assert issues[["application_id", "column", "rule", "value"]].values.tolist() == [
        [first, "observed_on", "before_application", before]]
    assert ffa.counts() == counts  # all or nothing
