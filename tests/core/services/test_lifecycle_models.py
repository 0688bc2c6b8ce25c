"""Retraining on outcomes, promotion with a reason, rollback in one step, lineage in the card."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from store_helpers import ANALYST, MANAGER, Lending
from trail import audit_rows

from finflow_core.errors import InvalidInput, ModelError, PermissionDenied
from finflow_core.services.context import Context
from finflow_core.services.workbench import Workbench

pytest_plugins = ["store_fixtures"]  # the store tests' shared fixtures


def wb(ff: Lending, who, when: datetime = datetime(2027, 9, 2, tzinfo=UTC)) -> Workbench:  # noqa: ANN001
    return Workbench(Context(ff.config, ff.store, clock=lambda: when), who)


def test_a_challenger_learns_from_outcomes_and_records_its_lineage(ffa_sqlite: Lending) -> None:
    ff = ffa_sqlite
    with pytest.raises(ModelError, match="load outcomes first"):
        wb(ff, ANALYST).models.train_challenger()
    [batch] = ff.batch_ids()
    drawn = wb(ff, ANALYST).outcomes.simulate([batch], as_of=date(2027, 9, 1), seed=1)
    wb(ff, ANALYST).outcomes.load(drawn.to_csv(index=False).encode())
    outcome = wb(ff, ANALYST).models.train_challenger()
    lineage = outcome.card["lineage"]
    assert lineage["parent_version"] == ff.version and not outcome.became_champion
    base, learned = lineage["data"]
    assert learned["rows"] == len(drawn) and learned["vintages"] == [batch]
    assert outcome.card["rows"] == base["rows"] + learned["rows"] - outcome.validation.rows_quarantined
    assert len(base["sha256"]) == 64

    manager = wb(ff, MANAGER).models
    with pytest.raises(PermissionDenied):
        wb(ff, ANALYST).models.promote(outcome.version, "mine is better")
    manager.promote(outcome.version, "learned from the first vintage's outcomes")
    assert manager.champion().version == outcome.version
    with pytest.raises(InvalidInput, match="reason"):
        manager.rollback("  ")
    assert manager.rollback("new champion misprices the low band") == ff.version
    assert manager.champion().version == ff.version
    verified = wb(ff, MANAGER).audit.verify()  # the trail knows who is champion after a rollback
    assert verified.ok, [f.line() for f in verified.findings]
    actions = [(e["action"], e["subject_id"]) for e in audit_rows(ff.store)
               if e["action"] in ("model_promoted", "model_rolled_back")]
    assert actions[-2:] == [("model_promoted", outcome.version), ("model_rolled_back", ff.version)]
    versions = {v.version: v for v in manager.versions()}
    assert versions[outcome.version].status == "retired"


def test_a_tampered_training_copy_is_refused(ffa_sqlite: Lending) -> None:
    ff = ffa_sqlite
    [batch] = ff.batch_ids()
    drawn = wb(ff, ANALYST).outcomes.simulate([batch], as_of=date(2027, 9, 1), seed=1)
    wb(ff, ANALYST).outcomes.load(drawn.to_csv(index=False).encode())
    copy = ff.model.folder / "training_data.csv.gz"
    original = copy.read_bytes()
    try:
        copy.write_bytes(original[:-10] + b"0" * 10)
        with pytest.raises(ModelError, match="was changed"):
            wb(ff, ANALYST).models.train_challenger()
    finally:
        copy.write_bytes(original)


def second_version(ff: Lending, low: float = 0.02, high: float = 0.9) -> str:
    """The session model registered again under a new version, with other band edges."""
    from store_helpers import SECRET_KEY

    from finflow_core.store.model_files import load_bundle, save_bundle

    bundle = load_bundle(ff.model.folder, SECRET_KEY.encode())
    bundle.version = ff.version[:-8] + "0ddba11e"
    bundle.card = {**bundle.card, "version": bundle.version}
    bundle.strategy = bundle.strategy.with_edges(low, high)
    folder = save_bundle(bundle, ff.config.paths.models_dir, SECRET_KEY.encode())
    ff.wb(ANALYST).models.register(bundle, folder)
    return bundle.version


def test_a_replay_counts_the_decisions_a_challenger_would_change_and_stores_nothing(
    ffa_sqlite: Lending,
) -> None:
    ff = ffa_sqlite
    other = second_version(ff)  # the same scores, a much wider review band
    before = ff.counts()
    replay = wb(ff, MANAGER).experiments.replay(other)
    assert ff.counts() == before
    assert replay.applications == ff.count("applications")
    assert replay.mean_probability_after == pytest.approx(replay.mean_probability_before, abs=1e-9)
    assert replay.changed > 0 and replay.to_review == replay.changed  # only the band edges moved
    assert replay.transitions["n"].sum() == replay.applications


def test_a_manager_starts_one_split_at_a_time_with_a_reason_and_stops_it(ffa_sqlite: Lending) -> None:
    from finflow_core.errors import Conflict

    ff = ffa_sqlite
    other = second_version(ff)
    manager = wb(ff, MANAGER).experiments
    with pytest.raises(PermissionDenied):
        wb(ff, ANALYST).experiments.start(other, reason="try it")
    with pytest.raises(InvalidInput, match="champion"):
        manager.start(ff.version, reason="the champion against itself")
    exp = manager.start(other, share=0.1, reason="wider review band on 10%", seed=7)
    assert exp.running and exp.seed == 7 and exp.share == 0.1
    with pytest.raises(Conflict, match="already running"):
        manager.start(other, reason="again")
    with pytest.raises(InvalidInput, match="needs a reason"):
        manager.stop(exp.id, reason="  ")
    assert [e.id for e in manager.running()] == [exp.id]
    manager.stop(exp.id, reason="enough data")
    assert manager.running() == []
    started = [e for e in audit_rows(ff.store) if e["action"] == "experiment_started"]
    assert started[-1]["details"]["seed"] == 7 and started[-1]["details"]["challenger"] == other


def test_a_challenger_holds_out_the_latest_vintage_and_is_compared_on_it(ffa_sqlite: Lending) -> None:
    """The issue's out-of-time holdout: the challenger learns from older labelled vintages; the
    most recent one, which neither model saw, is where both are judged."""
    from finflow_core.lending.synthetic import generate_applications
    from finflow_core.services.model_comparison import EvidenceKind

    ff = ffa_sqlite
    [older] = ff.batch_ids()
    later = generate_applications(600, seed=77).drop(columns="default").to_csv(index=False).encode()
    newer = ff.run(later).batch_id
    analyst = wb(ff, ANALYST)
    drawn = analyst.outcomes.simulate([older, newer], as_of=date(2027, 9, 1), seed=3)
    analyst.outcomes.load(drawn.to_csv(index=False).encode())

    outcome = analyst.models.train_challenger()
    lineage = outcome.card["lineage"]
    assert lineage["data"][1]["vintages"] == [older]
    assert lineage["holdout"]["vintages"] == [newer] and lineage["holdout"]["rows"] > 0
    compared = outcome.champion_comparison
    assert compared is not None and compared.evidence == EvidenceKind.RECENT_VINTAGES
    assert newer in compared.source and compared.rows == lineage["holdout"]["rows"]
    again = wb(ff, MANAGER).models.compare(outcome.version)  # the CLI's default, the same rows
    assert again.evidence == EvidenceKind.RECENT_VINTAGES and again.rows == compared.rows
    assert again.candidate.auc == pytest.approx(compared.candidate.auc)
