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
