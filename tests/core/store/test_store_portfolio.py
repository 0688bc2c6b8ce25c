"""The portfolio roll-ups equal a fresh GROUP BY of the applications after batches and decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, text
from store_helpers import (
    ANALYST,
    MANAGER,
    BatchFiles,
    Lending,
    raw_sql,
)

from finflow_core.errors import PermissionDenied
from finflow_core.services.access import Principal
from finflow_core.services.portfolio import PortfolioFilter
from finflow_core.store.lending_tables import applications
from finflow_core.store.rollup import check_rollups, probability_bin

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures


OLGA = Principal(None, "olga.officer", frozenset({"officer"}))


def applications_frame(ff: Lending) -> pd.DataFrame:
    with ff.store.connect() as conn:
        return pd.DataFrame(conn.execute(select(applications)).mappings().all())


@pytest.fixture
def busy(ffa: Lending, batches_dir: BatchFiles) -> Lending:
    return make_busy(ffa, batches_dir)


@pytest.fixture
def busy_sqlite(ffa_sqlite: Lending, batches_dir: BatchFiles) -> Lending:
    return make_busy(ffa_sqlite, batches_dir)


def make_busy(ff: Lending, batches_dir: BatchFiles) -> Lending:
    """Two batches, then officers' decisions of every kind: first, referral, revision, override."""
    [a] = ff.batch_ids()  # batch a is stored already
    ff.run(batches_dir.b)
    pending = ff.pending_ids()
    assert len(pending) >= 30
    for i, case in enumerate(pending[:30]):
        outcome = ("approve", "decline", "refer")[i % 3]
        d = ff.wb(OLGA).review.decide(case, outcome, reason="r", note="n")
        if i % 4 == 0:  # revise a quarter of them
            ff.wb(OLGA).review.decide(case, "approve" if outcome != "approve" else "decline",
                        reason="second thoughts", supersedes=d.id)
    with ff.store.connect() as conn:
        autos = conn.execute(select(applications.c.id, applications.c.current_decision_id)
                             .where(applications.c.decided_kind == "auto",
                                    applications.c.batch_id == a).limit(5)).all()
    assert len(autos) == 5  # the overrides happen: the roll-ups see every kind of decision
    for app_id, decision_id in autos:  # officers override automatic decisions
        ff.wb(OLGA).review.decide(app_id, "refer", note="override", supersedes=decision_id)
    return ff


def test_rollups_equal_a_fresh_group_by_after_batches_and_decisions(busy: Lending) -> None:
    with busy.store.connect() as conn:
        assert check_rollups(conn) == []
    apps = applications_frame(busy)
    summary = busy.wb(MANAGER).portfolio.summary()
    kpis = summary.kpis()
    assert kpis["applications"] == len(apps)
    for status in ("approved", "declined", "pending", "referred"):
        assert kpis[status] == int((apps["status"] == status).sum()), status
    assert kpis["expected_profit"] == pytest.approx(apps["expected_profit"].sum(), rel=1e-9, abs=0.01)
    assert kpis["amount_approved"] == pytest.approx(apps.loc[apps["status"] == "approved", "amount"].sum())
    assert kpis["auto_decisions"] == int((apps["decided_kind"] == "auto").sum())
    grouped = summary.by("week_start", "status")
    fresh = apps.groupby(["week_start", "status"]).agg(n=("id", "size"), amount=("amount", "sum")).reset_index()
    merged = grouped.merge(fresh, on=["week_start", "status"], suffixes=("", "_fresh"))
    assert len(merged) == len(fresh) == len(grouped)
    assert (merged["n"] == merged["n_fresh"]).all()
    assert np.allclose(merged["amount"], merged["amount_fresh"])
    by_industry = busy.wb(MANAGER).portfolio.summary(segment="industry").by("segment")
    assert dict(zip(by_industry["segment"], by_industry["n"], strict=True)) == \
        apps["segment_1"].value_counts().to_dict()
    hist = summary.histogram
    counts = probability_bin(apps["probability"]).value_counts()
    assert hist["n"].tolist() == [int(counts.get(i, 0)) for i in range(len(hist))]

    # the check is not vacuous: roll-ups changed behind the code's back are reported
    raw_sql(busy.store, "UPDATE portfolio_rollup SET n = n + 1 WHERE n > 0 AND status = 'pending' "
                        "AND batch_id = (SELECT min(batch_id) FROM portfolio_rollup)")
    with busy.store.connect() as conn:
        problems = check_rollups(conn)
    assert problems and all("pending" in p for p in problems)
    raw_sql(busy.store, "UPDATE portfolio_rollup SET n = n - 1 WHERE n > 0 AND status = 'pending' "
                        "AND batch_id = (SELECT min(batch_id) FROM portfolio_rollup)")
    with busy.store.connect() as conn:
        top = conn.execute(text("SELECT max(bin) FROM probability_rollup")).scalar_one()
    raw_sql(busy.store, f"UPDATE probability_rollup SET bin = bin - 1 WHERE bin = {top}")
    with busy.store.connect() as conn:
        problems = check_rollups(conn)
    assert problems and all(p.startswith("probability") for p in problems)


def test_filters_match_the_same_filter_on_the_applications(busy_sqlite: Lending) -> None:
    busy = busy_sqlite
    apps = applications_frame(busy)
    week = sorted(apps["week_start"].unique())[0]
    batch = apps["batch_id"].iloc[0]
    f = PortfolioFilter(week_from=week, week_to=week, batch_ids=(batch,),
                        segments={"region": ("west", "midwest")})
    got = busy.wb(MANAGER).portfolio.summary(f)
    mask = ((apps["week_start"] == week) & (apps["batch_id"] == batch)
            & apps["segment_2"].isin(["west", "midwest"]))
    assert got.total == int(mask.sum()) > 0
    assert int(got.histogram["n"].sum()) == int(mask.sum())


def test_only_managers_see_the_portfolio(ff: Lending) -> None:
    with pytest.raises(PermissionDenied):
        ff.wb(ANALYST).portfolio.summary()
    assert ff.wb(MANAGER).portfolio.summary().total == 0
