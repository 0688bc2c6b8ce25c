"""A running champion-challenger test is used by the weekly run: a split routes its share of
each batch to the challenger, a shadow scores beside the champion, a stop ends both."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select
from store_helpers import ANALYST, MANAGER, SECRET_KEY, BatchFiles, Lending
from trail import audit_rows

from finflow_core.lending.experiments import assign_arms
from finflow_core.lending.terms import Arm
from finflow_core.pipeline.experiment_scoring import ExperimentNeedsLocalRun
from finflow_core.services.context import Context
from finflow_core.services.workbench import Workbench
from finflow_core.store.lending_tables import applications, decisions, scores
from finflow_core.store.lifecycle_tables import application_arms, shadow_scores

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures

LOW, HIGH = 0.02, 0.9  # the challenger's edges: a much wider review band than the champion's


def wb(ff: Lending, who, when: datetime = datetime(2027, 9, 2, tzinfo=UTC)) -> Workbench:  # noqa: ANN001
    return Workbench(Context(ff.config, ff.store, clock=lambda: when), who)


def second_version(ff: Lending, low: float = LOW, high: float = HIGH) -> str:
    """The session model registered again under a new version, with other band edges."""
    from finflow_core.store.model_files import load_bundle, save_bundle

    bundle = load_bundle(ff.model.folder, SECRET_KEY.encode())
    bundle.version = ff.version[:-8] + "0ddba11e"
    bundle.card = {**bundle.card, "version": bundle.version}
    bundle.strategy = bundle.strategy.with_edges(low, high)
    folder = save_bundle(bundle, ff.config.paths.models_dir, SECRET_KEY.encode())
    ff.wb(ANALYST).models.register(bundle, folder)
    return bundle.version


def stored(ff: Lending, batch_id: str) -> pd.DataFrame:
    """One row per stored application of a batch: its score, automatic decision and arm."""
    a, s, d, arm = applications.c, scores.c, decisions.c, application_arms.c
    query = (select(a.id, a.external_id, a.probability, a.band, s.model_version, d.model_version
                    .label("decided_version"), d.decided_by, arm.arm, arm.experiment_id)
             .select_from(applications.join(scores, s.application_id == a.id)
                          .outerjoin(decisions, d.id == a.current_decision_id)
                          .outerjoin(application_arms, arm.application_id == a.id))
             .where(a.batch_id == batch_id).order_by(a.row_number))
    with ff.store.connect() as conn:
        return pd.DataFrame([dict(r._mapping) for r in conn.execute(query)])


def band_of(p: pd.Series, low: float, high: float) -> pd.Series:
    return pd.Series(["low" if x < low else "high" if x >= high else "medium" for x in p], index=p.index)


def champion_edges(ff: Lending) -> tuple[float, float]:
    s = ff.engine.strategy
    return s.low_edge, s.high_edge


def scored_entry(ff: Lending, batch_id: str) -> dict[str, Any]:
    [entry] = [e for e in audit_rows(ff.store) if e["action"] == "batch_scored" and e["subject_id"] == batch_id]
    return entry["details"]


def verify_ok(ff: Lending) -> None:
    report = ff.wb(MANAGER).audit.verify()
    assert report.ok, [f.line() for f in report.findings]


def test_a_split_sends_exactly_the_hashed_share_to_the_challenger(
    ffa: Lending, batches_dir: BatchFiles,
) -> None:
    ff = ffa  # both backends: PostgreSQL writes the arm and shadow rows through COPY
    other = second_version(ff)
    exp = wb(ff, MANAGER).experiments.start(other, share=0.1, reason="wider review band on 10%", seed=7)
    summary = ff.run(batches_dir.b)
    rows = stored(ff, summary.batch_id)
    n = len(rows)
    assert n == summary.rows_valid > 500
    assert rows["arm"].notna().all() and (rows["experiment_id"] == exp.id).all()  # one arm row each
    picked = assign_arms(rows["external_id"].tolist(), 0.1, 7) == Arm.CHALLENGER
    challenger = rows["arm"] == Arm.CHALLENGER
    assert (challenger.to_numpy() == picked).all()  # exactly the rows the keyed hash picks
    k = int(challenger.sum())
    assert abs(k - 0.1 * n) <= 4 * math.sqrt(n * 0.1 * 0.9), (k, n)  # ~10%, binomially
    assert 0 < k < n
    # each row records the version that scored and decided it
    assert (rows.loc[challenger, "model_version"] == other).all()
    assert (rows.loc[~challenger, "model_version"] == ff.version).all()
    auto = rows["decided_by"].notna()
    assert (rows.loc[auto, "decided_version"] == rows.loc[auto, "model_version"]).all()
    assert (rows.loc[auto, "decided_by"] == "model:" + rows.loc[auto, "model_version"]).all()
    assert (rows.loc[auto & challenger, "decided_version"] == other).all()
    # and is routed by that version's strategy
    ch = rows[challenger]
    assert (ch["band"] == band_of(ch["probability"], LOW, HIGH)).all()
    champ = rows[~challenger]
    assert (champ["band"] == band_of(champ["probability"], *champion_edges(ff))).all()
    assert (ch["band"] == "medium").sum() > (band_of(ch["probability"], *champion_edges(ff)) == "medium").sum()
    split = scored_entry(ff, summary.batch_id)["experiments"]["split"]
    assert split["experiment_id"] == exp.id and split["challenger"] == other
    assert split["arms"] == {"challenger": k, "champion": n - k}
    assert summary.model_version == ff.version
    verify_ok(ff)


def test_the_same_file_under_the_same_seed_routes_the_same_ids(
    ffa_sqlite: Lending, batches_dir: BatchFiles,
) -> None:
    ff = ffa_sqlite
    other = second_version(ff)
    wb(ff, MANAGER).experiments.start(other, share=0.2, reason="try it", seed=11)
    first = ff.run(batches_dir.b)
    before = stored(ff, first.batch_id)
    ff.wb(MANAGER).batches.void(first.batch_id, "run it again")
    again = ff.run(batches_dir.b)
    assert again.batch_id != first.batch_id
    after = stored(ff, again.batch_id)
    ids = {b: set(f.loc[f["arm"] == Arm.CHALLENGER, "external_id"]) for b, f in
           (("before", before), ("after", after))}
    assert ids["before"] == ids["after"] and ids["before"]
    other_seed = assign_arms(after["external_id"].tolist(), 0.2, 12) == Arm.CHALLENGER
    assert set(after.loc[other_seed, "external_id"]) != ids["after"]  # the seed matters


def test_a_shadow_scores_every_row_and_changes_no_decision(
    ffa: Lending, batches_dir: BatchFiles,
) -> None:
    ff = ffa  # both backends: PostgreSQL writes the arm and shadow rows through COPY
    [plain_id] = ff.batch_ids()
    plain = stored(ff, plain_id)
    other = second_version(ff)
    ff.wb(MANAGER).batches.void(plain_id, "run it again under a shadow")
    exp = wb(ff, MANAGER).experiments.start(other, kind="shadow", reason="watch the wider band")
    summary = ff.run(batches_dir.a)
    rows = stored(ff, summary.batch_id)
    assert len(rows) == len(plain)
    for col in ("external_id", "probability", "band", "model_version", "decided_by"):
        assert rows[col].tolist() == plain[col].tolist(), col  # the champion decided everything
    assert (rows["model_version"] == ff.version).all() and rows["arm"].isna().all()
    with ff.store.connect() as conn:
        shadow = pd.DataFrame([dict(r._mapping) for r in conn.execute(
            select(shadow_scores).where(shadow_scores.c.application_id.in_(rows["id"].tolist())))])
    assert len(shadow) == len(rows) and set(shadow["application_id"]) == set(rows["id"])
    assert (shadow["experiment_id"] == exp.id).all() and (shadow["model_version"] == other).all()
    shadow = shadow.set_index("application_id").loc[rows["id"]]
    assert shadow["probability"].to_numpy() == pytest.approx(rows["probability"].to_numpy())  # same model
    assert (shadow["band"].to_numpy() == band_of(shadow["probability"], LOW, HIGH).to_numpy()).all()
    assert (shadow["band"] != rows["band"].to_numpy()).any()  # its edges would have decided otherwise
    assert scored_entry(ff, summary.batch_id)["experiments"]["shadow"]["challenger"] == other
    verify_ok(ff)


def test_stopping_the_test_makes_the_next_batch_all_champion(
    ffa_sqlite: Lending, batches_dir: BatchFiles,
) -> None:
    ff = ffa_sqlite
    other = second_version(ff)
    manager = wb(ff, MANAGER).experiments
    exp = manager.start(other, share=0.5, reason="half and half", seed=3)
    during = stored(ff, ff.run(batches_dir.b).batch_id)
    assert (during["model_version"] == other).sum() > 0
    manager.stop(exp.id, reason="enough")
    after = ff.run(batches_dir.recession)
    rows = stored(ff, after.batch_id)
    assert len(rows) and (rows["model_version"] == ff.version).all() and rows["arm"].isna().all()
    assert "experiments" not in scored_entry(ff, after.batch_id)


def test_promoting_the_challenger_ends_its_test_with_an_audited_stop(ffa_sqlite: Lending) -> None:
    ff = ffa_sqlite
    other = second_version(ff)
    exp = wb(ff, MANAGER).experiments.start(other, share=0.2, reason="try it", seed=5)
    wb(ff, MANAGER).models.promote(other, "the split showed it prices better")
    assert wb(ff, MANAGER).experiments.running() == []
    stops = [e for e in audit_rows(ff.store) if e["action"] == "experiment_stopped"]
    assert [s["subject_id"] for s in stops] == [str(exp.id)] and "promoted" in stops[0]["details"]["reason"]


def test_a_dask_run_is_refused_while_a_test_runs_and_stores_nothing(
    ffa_sqlite: Lending, batches_dir: BatchFiles,
) -> None:
    ff = ffa_sqlite
    wb(ff, MANAGER).experiments.start(second_version(ff), share=0.1, reason="try it", seed=1)

    class Cluster:
        name = "dask"

        def parts(self, batch: Any, scoring: Any) -> Any:
            raise AssertionError("never reached")

    before = ff.counts()
    with pytest.raises(ExperimentNeedsLocalRun, match="run the batch locally"):
        ff.run(batches_dir.b, engine=Cluster())
    assert ff.counts() == before


def test_compare_counts_the_stored_arms_of_a_trained_challenger_and_verify_stays_ok(
    ffa_sqlite: Lending, batches_dir: BatchFiles,
) -> None:
    ff = ffa_sqlite
    [batch_a] = ff.batch_ids()
    drawn = wb(ff, ANALYST).outcomes.simulate([batch_a], as_of=date(2027, 9, 1), seed=1)
    wb(ff, ANALYST).outcomes.load(drawn.to_csv(index=False).encode())
    trained = wb(ff, ANALYST).models.train_challenger()
    assert not trained.became_champion
    exp = wb(ff, MANAGER).experiments.start(trained.version, share=0.5, reason="learned model", seed=5)
    summary = ff.run(batches_dir.b)
    rows = stored(ff, summary.batch_id)
    arms = rows["arm"].value_counts().to_dict()
    assert set(arms) == {"champion", "challenger"}
    assert set(rows.loc[rows["arm"] == "challenger", "model_version"]) == {trained.version}
    later = wb(ff, ANALYST, datetime(2028, 9, 2, tzinfo=UTC))
    outcomes = later.outcomes.simulate([summary.batch_id], as_of=date(2028, 9, 1), seed=2)
    later.outcomes.load(outcomes.to_csv(index=False).encode())
    result = wb(ff, MANAGER, datetime(2028, 9, 2, tzinfo=UTC)).experiments.compare(exp.id)
    assert result.champion.applications == arms["champion"]
    assert result.challenger.applications == arms["challenger"]
    assert result.challenger.with_outcome > 0 and result.champion.with_outcome > 0
    verify_ok(ff)


def test_compare_counts_only_its_own_tests_arms(ffa_sqlite: Lending, batches_dir: BatchFiles) -> None:
    ff = ffa_sqlite
    other = second_version(ff)
    manager = wb(ff, MANAGER).experiments
    first = manager.start(other, share=0.3, reason="first", seed=1)
    one = stored(ff, ff.run(batches_dir.b).batch_id)
    manager.stop(first.id, reason="next")
    second = manager.start(other, share=0.1, reason="second", seed=2)
    two = stored(ff, ff.run(batches_dir.recession).batch_id)
    for exp, rows in ((first, one), (second, two)):
        result = manager.compare(exp.id)
        counts = rows["arm"].value_counts()
        assert result.champion.applications == counts["champion"]
        assert result.challenger.applications == counts["challenger"]


def test_a_typed_in_application_in_the_challenger_arm_is_decided_by_the_challenger(
    ffa_sqlite: Lending, batches_dir: BatchFiles,
) -> None:
    from store_helpers import OFFICER

    ff = ffa_sqlite
    other = second_version(ff)
    wb(ff, MANAGER).experiments.start(other, share=0.5, reason="forms too", seed=9)
    ids = [f"FORM-{i:04d}" for i in range(40)]
    arms = dict(zip(ids, assign_arms(ids, 0.5, 9), strict=True))
    record = pd.read_csv(batches_dir.b, dtype=str, keep_default_na=False).iloc[0].to_dict()
    for arm in (Arm.CHALLENGER, Arm.CHAMPION):
        external = next(i for i in ids if arms[i] == arm)
        decision = ff.wb(OFFICER).applications.submit({**record, "application_id": external})
        [row] = stored(ff, decision.batch_id).to_dict("records")
        assert row["arm"] == arm and row["external_id"] == external
        assert row["model_version"] == (other if arm == Arm.CHALLENGER else ff.version)
    verify_ok(ff)
