"""The adverse impact ratio: each group's approval rate over the most-approved group's."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from finflow_core.lending.fairness import adverse_impact

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures


def test_a_group_approved_at_under_four_fifths_of_the_best_rate_is_flagged() -> None:
    counts = pd.DataFrame({"column": "sex", "group": ["F", "M", "X"],
                           "decided": [400, 500, 10], "approved": [200, 350, 1]})
    rates = {g.group: g for g in adverse_impact(counts)}
    assert rates["M"].reference and rates["M"].impact_ratio == 1.0
    assert round(rates["F"].impact_ratio, 4) == round(0.5 / 0.7, 4) and rates["F"].flagged
    assert rates["X"].small and not rates["X"].flagged  # 10 decisions: shown, never flagged
    fair = pd.DataFrame({"column": "sex", "group": ["F", "M"], "decided": [400, 500], "approved": [260, 350]})
    assert not any(g.flagged for g in adverse_impact(fair))  # 0.65 / 0.70 = 0.93


def test_small_groups_are_never_the_reference() -> None:
    counts = pd.DataFrame({"column": "age_band", "group": ["18-25", "26-60", "60+"],
                           "decided": [5, 800, 300], "approved": [5, 480, 150]})
    rates = {g.group: g for g in adverse_impact(counts)}
    assert rates["26-60"].reference and not rates["18-25"].reference
    assert rates["60+"].impact_ratio == 0.5 / 0.6 and rates["60+"].flagged is False  # 0.83


# -- the service: counted from the store ------------------------------------------------------

def _stored(ff) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """Every stored application's industry (from the cells as submitted) and status."""
    import json

    from sqlalchemy import select

    from finflow_core.store.lending_tables import applications

    with ff.store.connect() as conn:
        rows = conn.execute(select(applications.c.data, applications.c.status)).all()
    return pd.DataFrame([(json.loads(d)["industry"], s) for d, s in rows], columns=["industry", "status"])


def test_fairness_counts_decided_applications_per_segment_group(ffa_sqlite) -> None:  # type: ignore[no-untyped-def]
    from store_helpers import MANAGER

    from finflow_core.lending.fairness import FOUR_FIFTHS

    ff = ffa_sqlite
    report = ff.wb(MANAGER).performance.fairness("industry")
    assert report.segments == ("industry",) and report.threshold == FOUR_FIFTHS
    stored = _stored(ff)
    decided = stored[stored["status"].isin(["approved", "declined"])]
    expected = {g: (len(p), int((p["status"] == "approved").sum())) for g, p in decided.groupby("industry")}
    assert {g.group: (g.decided, g.approved) for g in report.groups} == expected
    assert report.decided == len(decided) < len(stored)  # pending cases are not decisions yet
    [reference] = [g for g in report.groups if g.reference]
    assert reference.impact_ratio == 1.0
    assert reference.approval_rate == max(g.approval_rate for g in report.groups if not g.small)
    for g in report.groups:
        assert g.flagged == (not g.small and g.impact_ratio < FOUR_FIFTHS)
    table = report.frame()
    assert list(table["segment"].unique()) == ["industry"] and len(table) == len(expected)
    both = ff.wb(MANAGER).performance.fairness()
    assert both.segments == tuple(ff.config.segments) and {g.column for g in both.groups} == set(both.segments)


def test_an_officer_decision_counts_and_a_voided_batch_does_not(ffa_sqlite) -> None:  # type: ignore[no-untyped-def]
    from store_helpers import ANALYST, MANAGER, PASSWORD

    ff = ffa_sqlite
    ff.users()
    before = {g.group: g for g in ff.wb(MANAGER).performance.fairness("industry").groups}
    case = ff.pending_ids()[0]
    officer = ff.wb(ff.gate.authenticate("oscar.officer", PASSWORD))
    with ff.store.connect() as conn:
        from sqlalchemy import select

        from finflow_core.store.lending_tables import applications
        group = conn.execute(select(applications.c.segment_1).where(applications.c.id == case)).scalar_one()
    officer.review.decide(case, "approve")
    after = {g.group: g for g in ff.wb(ANALYST).performance.fairness("industry").groups}
    assert sum(g.decided for g in after.values()) == sum(g.decided for g in before.values()) + 1
    assert sum(g.approved for g in after.values()) == sum(g.approved for g in before.values()) + 1
    assert after[group].approved == before[group].approved + 1  # industry is segment 1
    [batch] = ff.batch_ids()
    ff.wb(ff.gate.authenticate("mia.manager", PASSWORD)).batches.void(batch, "wrong file")
    assert ff.wb(MANAGER).performance.fairness("industry").groups == []


def test_fairness_is_for_analysts_and_managers_and_named_segments_only(ffa_sqlite) -> None:  # type: ignore[no-untyped-def]
    from store_helpers import MANAGER, OFFICER

    from finflow_core.errors import InvalidInput, PermissionDenied

    with pytest.raises(PermissionDenied):
        ffa_sqlite.wb(OFFICER).performance.fairness()
    with pytest.raises(InvalidInput, match="neither a protected column nor a segment"):
        ffa_sqlite.wb(MANAGER).performance.fairness("sex")


def test_a_protected_column_is_counted_from_the_cells_as_submitted_overall_and_per_week(
    ff, tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """Sex is never a model input, so it has no column of its own: the approval rates by
    group come from what the applicant's file said, per batch and over time."""
    import numpy as np
    from store_helpers import ANALYST, MANAGER, small_config_raw

    from finflow_core.lending.config import parse_config
    from finflow_core.lending.synthetic import generate_applications
    from finflow_core.services.context import Context
    from finflow_core.services.workbench import Workbench

    raw = small_config_raw()
    raw["dataset"]["columns"].append({"name": "owner_sex", "type": "category", "categories": ["F", "M"],
                                      "role": "protected", "nullable": True, "required": False})
    cfg = parse_config(raw, source="with owner_sex")
    assert "owner_sex" not in cfg.feature_names
    ctx = Context(cfg, ff.store)
    weeks = []
    for k, start in enumerate(("2026-11-02", "2026-11-09")):
        frame = generate_applications(400, seed=50 + k, start=pd.Timestamp(start).date(), days=5)
        frame = frame.drop(columns="default")
        frame["owner_sex"] = np.where(np.arange(len(frame)) % 3 == 0, "F", "M")
        path = tmp_path / f"week{k}.csv"
        frame.to_csv(path, index=False)
        weeks.append(Workbench(ctx, ANALYST).batches.run(path).batch_id)
    performance = Workbench(ctx, MANAGER).performance
    report = performance.fairness("owner_sex")
    stored = pd.DataFrame([(json.loads(d).get("owner_sex"), s) for d, s in _cells(ff)],
                          columns=["owner_sex", "status"])
    decided = stored[stored["status"].isin(["approved", "declined"])]
    expected = {g: (len(p), int((p["status"] == "approved").sum())) for g, p in decided.groupby("owner_sex")}
    assert {g.group: (g.decided, g.approved) for g in report.groups} == expected
    assert set(expected) == {"F", "M"}
    assert performance.fairness().segments[0] == "owner_sex"  # protected columns first
    trend = performance.fairness_over_time("owner_sex", by="batch")
    assert [p.period for p in trend] == sorted(weeks)
    assert sum(g.decided for p in trend for g in p.report.groups) == len(decided)
    weekly = performance.fairness_over_time("owner_sex")
    assert len(weekly) >= 2 and all(len(p.period) == 10 for p in weekly)


def _cells(ff):  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from finflow_core.store.lending_tables import applications

    with ff.store.connect() as conn:
        return conn.execute(select(applications.c.data, applications.c.status)).all()
