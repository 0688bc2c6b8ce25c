"""One application typed in: its decision, probability and reasons in well under a second.

It goes through the same quality gate and scoring as a weekly batch (a batch of one), so
the answer is the one the weekly run would give; submitted, it is stored and audited like
any batch, and the identical form submitted twice is recognised and not stored twice.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from finflow_core.lending.intake.reader import iter_chunks, open_batch
from finflow_core.lending.intake.validation import BatchValidator, validate_batch
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.lending.strategy import BAND_DECISION
from finflow_core.services.access import require
from finflow_core.services.auth import Principal
from finflow_core.services.batches import store_batch
from finflow_core.store import Store
from finflow_core.store.lending_tables import applications, scores


@dataclass
class SingleDecision:
    valid: bool
    issues: list[dict[str, Any]] = field(default_factory=list)
    probability: float | None = None
    band: str | None = None
    decision: str | None = None
    expected_profit: float | None = None
    reasons: list[dict[str, Any]] = field(default_factory=list)
    batch_id: str | None = None
    stored_id: int | None = None
    seconds: float = 0.0


def record_csv(record: dict[str, Any], columns: list[str]) -> bytes:
    """The form as a one-row CSV with the config's columns (blank where not given)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    writer.writerow(["" if record.get(c) is None else str(record.get(c)) for c in columns])
    return buf.getvalue().encode("utf-8")


def score_one(engine: ScoringEngine, record: dict[str, Any]) -> SingleDecision:
    """Validate and score one application in process; nothing is stored."""
    started = time.perf_counter()
    columns = [c.name for c in engine.config.input_columns]
    report = validate_batch(record_csv(record, columns), engine.config, name="form")
    if report.rows_valid == 0:
        return SingleDecision(False, issues=report.issues.to_dict("records"),
                              seconds=time.perf_counter() - started)
    row = engine.score(report.valid, report.row_numbers).iloc[0]
    return SingleDecision(
        True, probability=float(row["probability"]), band=str(row["band"]), decision=str(row["decision"]),
        expected_profit=float(row["expected_profit"]), reasons=list(row["reasons"]),
        seconds=time.perf_counter() - started,
    )


def submit_application(
    store: Store, actor: Principal, record: dict[str, Any], engine: ScoringEngine
) -> SingleDecision:
    """Validate, score, store and audit one application entered by an officer."""
    require(actor, "submit_application")
    started = time.perf_counter()
    config = engine.config
    columns = [c.name for c in config.input_columns]
    data = record_csv(record, columns)
    batch = open_batch(data, config, name=f"form:{record.get(config.id_column, '')}"[:255])
    result = BatchValidator(config).validate(next(iter_chunks(batch)))
    if len(result.valid) == 0:  # nothing stored for a form that fails the quality gate
        return SingleDecision(False, issues=result.issues.to_dict("records"),
                              seconds=time.perf_counter() - started)
    summary = store_batch(store, actor, batch, engine)
    with store.connect() as conn:
        row = conn.execute(
            select(applications.c.id, applications.c.probability, applications.c.band,
                   applications.c.expected_profit, scores.c.reasons)
            .join(scores, scores.c.application_id == applications.c.id)
            .where(applications.c.batch_id == summary.batch_id)
        ).first()
    decision = BAND_DECISION[row.band]
    return SingleDecision(
        True, probability=row.probability, band=row.band, decision=decision,
        expected_profit=row.expected_profit, reasons=json.loads(row.reasons),
        batch_id=summary.batch_id, stored_id=row.id, seconds=time.perf_counter() - started,
    )


@dataclass
class CaseExplanation:
    """SHAP contributions of every feature for one application (for a waterfall chart)."""

    features: list[str]
    labels: list[str]
    values: list[Any]  # as a person reads them (categories as labels)
    contributions: list[float]  # in the model's raw output (log-odds for boosted trees)
    base_value: float
    probability: float


def explain_record(engine: ScoringEngine, record: dict[str, Any]) -> CaseExplanation:
    """Every feature's contribution to one application's score, largest first."""
    if engine.explainer is None:
        raise ValueError("this scoring engine was built without explanations")
    config = engine.config
    columns = [c.name for c in config.input_columns]
    report = validate_batch(record_csv(record, columns), config, name="case")
    if report.rows_valid == 0:
        raise ValueError("the stored application no longer passes the quality gate: "
                         + "; ".join(report.issues["message"]))
    frame = report.valid
    matrix = engine.features(frame)
    exp = engine.explainer.explain_matrix(matrix)
    readable = engine.bundle.model.features_.frame(frame).iloc[0]
    order = sorted(range(len(exp.features)), key=lambda j: -abs(exp.shap[0, j]))
    return CaseExplanation(
        features=[exp.features[j] for j in order],
        labels=[config.feature_display(exp.features[j]) for j in order],
        values=[_readable(readable[exp.features[j]]) for j in order],
        contributions=[float(exp.shap[0, j]) for j in order],
        base_value=exp.base_value,
        probability=float(engine.predict(matrix)[0]),
    )


def _readable(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    return v
