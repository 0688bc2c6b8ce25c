"""One application typed in: its decision, probability and reasons in well under a second.

It goes through the same quality gate and scoring as a weekly batch (a batch of one), so
the answer is the one the weekly run would give; submitted, it is stored and audited like
any batch. An application id is one application: the same id with the same figures is
answered with the decision already made (``SingleDecision.earlier``), with other figures it
is refused (:class:`DuplicateApplication`, naming the stored one), never stored twice.
"""

from __future__ import annotations

import csv
import io
import json
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from finflow_core.errors import Conflict
from finflow_core.formatting import when
from finflow_core.lending.config import FINFLOW_CSV, ColumnSpec
from finflow_core.lending.intake.reader import open_batch
from finflow_core.lending.intake.sources import iter_chunks
from finflow_core.lending.intake.validation import BatchValidator, validate_batch
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.lending.terms import BAND_RECOMMENDATION, Band, BatchOrigin, Recommendation
from finflow_core.pipeline.local import LocalEngine
from finflow_core.services.access import Action
from finflow_core.services.base import Service
from finflow_core.services.scoring_engines import champion_engine
from finflow_core.store import cases
from finflow_core.store.portfolio_queries import TYPED_IN_PREFIX


class DuplicateApplication(Conflict):
    """The application id is stored already, with other figures."""


@dataclass(frozen=True)
class EarlierDecision:
    """The stored application an identical resubmission found, and where it stands."""

    application_id: int
    batch_id: str
    stored_at: str
    stored_by: str
    status: str
    decided_at: str | None
    decided_by: str | None
    outcome: str | None


@dataclass
class SingleDecision:
    valid: bool
    issues: list[dict[str, Any]] = field(default_factory=list)
    probability: float | None = None
    band: Band | None = None
    decision: Recommendation | None = None
    expected_profit: float | None = None
    reasons: list[dict[str, Any]] = field(default_factory=list)
    batch_id: str | None = None
    stored_id: int | None = None
    seconds: float = 0.0
    earlier: EarlierDecision | None = None  # set when this was a resubmission of a stored one


@dataclass
class CaseExplanation:
    """SHAP contributions of every feature for one application (for a waterfall chart)."""

    features: list[str]
    labels: list[str]
    values: list[Any]  # as a person reads them (categories as labels)
    contributions: list[float]  # in the model's raw output (log-odds for boosted trees)
    base_value: float
    probability: float


_ONE_AT_A_TIME = threading.Lock()


def _same_cells(stored: dict[str, Any], new: dict[str, Any]) -> bool:
    """The same figures, however written (``850000`` and ``850000.0`` are one amount)."""
    def value(v: Any) -> Any:
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        try:
            number = float(v)
        except (TypeError, ValueError):
            return str(v).strip()
        return None if math.isnan(number) else number
    keys = set(stored) | set(new)
    return all(value(stored.get(k)) == value(new.get(k)) for k in keys)


def record_csv(record: dict[str, Any], columns: Sequence[ColumnSpec]) -> bytes:
    """The form as a one-row CSV with the config's columns (blank where not given), each
    value written as the column's cells are (a date in its format, a percentage as 12.5)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([c.name for c in columns])
    writer.writerow([c.cell_text(record.get(c.name)) for c in columns])
    return buf.getvalue().encode("utf-8")


class ApplicationService(Service):
    """Officers type in single applications and get a decision at once."""

    def score(self, record: dict[str, Any], *, engine: ScoringEngine | None = None) -> SingleDecision:
        """Validate and score one application in process; nothing is stored."""
        self.require(Action.SUBMIT_APPLICATION)
        started = time.perf_counter()
        engine = engine or champion_engine(self.ctx)
        report = validate_batch(record_csv(record, engine.config.input_columns), engine.config, name="form",
                                form=FINFLOW_CSV)
        if report.rows_valid == 0:
            return SingleDecision(False, issues=report.issues.to_dict("records"),
                                  seconds=time.perf_counter() - started)
        row = engine.score(report.valid, report.row_numbers).iloc[0]
        return SingleDecision(
            True, probability=float(row["probability"]), band=Band(row["band"]),
            decision=Recommendation(row["decision"]), expected_profit=float(row["expected_profit"]),
            reasons=list(row["reasons"]), seconds=time.perf_counter() - started,
        )

    def submit(self, record: dict[str, Any], *, engine: ScoringEngine | None = None) -> SingleDecision:
        """Validate, score, store and audit one application."""
        self.require(Action.SUBMIT_APPLICATION)
        started = time.perf_counter()
        config = self.ctx.config
        engine = engine or champion_engine(self.ctx)
        data = record_csv(record, config.input_columns)
        batch = open_batch(data, config, name=f"{TYPED_IN_PREFIX}{record.get(config.id_column, '')}"[:255],
                           form=FINFLOW_CSV)
        result = BatchValidator(config).validate(next(iter_chunks(batch)))
        if len(result.valid) == 0:  # nothing stored for a form that fails the quality gate
            return SingleDecision(False, issues=result.issues.to_dict("records"),
                                  seconds=time.perf_counter() - started)
        external = str(result.valid_raw[config.id_column].iloc[0])
        cells = json.loads(result.valid_raw.to_json(orient="records", lines=True, force_ascii=False)
                           .splitlines()[0])
        with _ONE_AT_A_TIME:  # check and store together (one server process submits at a time)
            earlier = self._stored(external, cells)
            if earlier is not None:
                return self._answer(earlier, started)
            summary = self.wb.batches._store(batch, LocalEngine(validated=[result]), scoring=engine,
                                             origin=BatchOrigin.FORM)
        with self.ctx.store.connect() as conn:
            row = cases.first_application_of_batch(conn, summary.batch_id)
        band = Band(row.band)
        return SingleDecision(
            True, probability=row.probability, band=band, decision=BAND_RECOMMENDATION[band],
            expected_profit=row.expected_profit, reasons=json.loads(row.reasons),
            batch_id=summary.batch_id, stored_id=row.id, seconds=time.perf_counter() - started,
        )

    def _stored(self, external: str, cells: dict[str, Any]) -> EarlierDecision | None:
        """The stored application with this id if its figures are the same; refused if not."""
        with self.ctx.store.connect() as conn:
            ids = cases.by_external_id(conn, external)
            if not ids:
                return None
            row = cases.application(conn, ids[0])
            batch = cases.batch_of(conn, row.batch_id)
            last = cases.latest_decision(conn, row.id)
        earlier = EarlierDecision(
            row.id, row.batch_id, batch.uploaded_at, batch.uploaded_by, row.status,
            last.decided_at if last else None, last.decided_by if last else None,
            str(last.outcome) if last else None)
        if _same_cells(json.loads(row.data), cells):
            return earlier
        how = ("typed in" if batch.file_name.startswith(TYPED_IN_PREFIX)
               else f"in the batch {batch.file_name!r}")
        raise DuplicateApplication(
            f"application {external!r} is already stored with other figures ({how} on "
            f"{when(batch.uploaded_at, self.ctx.config.display.timezone)} by {batch.uploaded_by}, now "
            f"{row.status}): an application id stands for one application, so this one was not stored. "
            "Check the figures, or give a changed application its own id",
            application_id=external, stored_id=row.id, batch_id=row.batch_id)

    def _answer(self, earlier: EarlierDecision, started: float) -> SingleDecision:
        with self.ctx.store.connect() as conn:
            row = cases.application(conn, earlier.application_id)
            score = cases.score(conn, earlier.application_id)
        band = Band(row.band)
        return SingleDecision(
            True, probability=row.probability, band=band, decision=BAND_RECOMMENDATION[band],
            expected_profit=row.expected_profit, reasons=cases.reasons(score), batch_id=row.batch_id,
            stored_id=row.id, seconds=time.perf_counter() - started, earlier=earlier,
        )


def explain_record(engine: ScoringEngine, record: dict[str, Any]) -> CaseExplanation:
    """Every feature's contribution to one application's score, largest first."""
    if engine.explainer is None:
        raise ValueError("this scoring engine was built without explanations")
    config = engine.config
    report = validate_batch(record_csv(record, config.input_columns), config, name="case",
                            form=FINFLOW_CSV)
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
