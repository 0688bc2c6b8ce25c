"""Realised outcomes come back: an outcome file is checked, linked to the stored applications
and recorded, all or nothing, and audited.

Only funded loans have outcomes. An application that already has one gets a new outcome
only as an explicit correction (with a reason), recorded beside the first, never over it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from functools import cached_property

import numpy as np
import pandas as pd

from finflow_core.errors import BatchRejected, InvalidInput
from finflow_core.formatting import tallied
from finflow_core.lending.intake.outcomes import (
    ISSUE_COLUMNS,
    OUTCOME_RULES,
    OutcomeFile,
    OutcomeSpec,
    issue_row,
    read_outcomes,
)
from finflow_core.lending.intake.reader import Source
from finflow_core.lending.strategy import LoanValues
from finflow_core.lending.synthetic import simulate_outcomes
from finflow_core.lending.terms import Status
from finflow_core.services.access import Action
from finflow_core.services.base import Service
from finflow_core.services.text_input import typed_text
from finflow_core.store import outcomes as rows_of
from finflow_core.store.audit_chain import append_audit


class OutcomeFileRejected(BatchRejected):
    """An outcome file with issues: nothing from it is recorded (the issues say why)."""

    def __init__(self, message: str, issues: pd.DataFrame) -> None:
        super().__init__(message, reason="outcome_issues", issues=len(issues),
                         rules={str(k): int(v) for k, v in issues["rule"].value_counts().items()})
        self.issues = issues


@dataclass
class OutcomePreview:
    """An outcome file checked and linked, not recorded yet."""

    file: OutcomeFile
    linked: pd.DataFrame  # one row per outcome to record (stored application id, values, supersedes)
    link_issues: pd.DataFrame
    correction_reason: str = ""

    @cached_property
    def issues(self) -> pd.DataFrame:
        both = [f for f in (self.file.issues, self.link_issues) if not f.empty]
        if not both:
            return pd.DataFrame(columns=ISSUE_COLUMNS)
        return pd.concat(both, ignore_index=True).sort_values(["row_number", "column"], kind="stable") \
            .reset_index(drop=True)

    @property
    def ok(self) -> bool:
        return self.issues.empty

    @property
    def corrections(self) -> int:
        return int(self.linked["supersedes_id"].notna().sum()) if len(self.linked) else 0

    def rule_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.issues["rule"].value_counts().items()}

    def rule_summary(self) -> str:
        """The issues in words with their counts: ``no stored application has this id ×3``."""
        return tallied(self.rule_counts(), OUTCOME_RULES)


@dataclass(frozen=True)
class OutcomeLoad:
    """What an outcome file changed."""

    file_id: int
    file_name: str
    rows: int
    defaults: int
    corrections: int


class OutcomeService(Service):
    """Analysts load what happened to funded loans."""

    def preview(self, source: Source, *, name: str | None = None, correction_reason: str = "",
                spec: OutcomeSpec | None = None) -> OutcomePreview:
        """Check a file and link it to the store; nothing is recorded."""
        self.require(Action.LOAD_OUTCOMES)
        reason = typed_text(correction_reason, "correction_reason")
        today = self.ctx.clock().date()
        checked = read_outcomes(source, spec or self.ctx.config.outcomes, today=today, name=name,
                                form=self.ctx.config.csv)
        linked, issues = self._link(checked, reason)
        return OutcomePreview(checked, linked, issues, reason)

    def load(self, source: Source | OutcomePreview, *, name: str | None = None,
             correction_reason: str = "") -> OutcomeLoad:
        """Record every outcome of a file, or none of them (a file with any issue is refused)."""
        self.require(Action.LOAD_OUTCOMES)
        preview = source if isinstance(source, OutcomePreview) else self.preview(
            source, name=name, correction_reason=correction_reason)
        if not preview.ok:
            counts = preview.rule_summary()
            raise OutcomeFileRejected(
                f"{preview.file.file.name}: nothing was recorded: {len(preview.issues):,} issue(s) "
                f"({counts}); fix the file and load it again", preview.issues)
        now = self.ctx.clock()
        frame = preview.linked
        corrections = preview.corrections
        with self.ctx.store.begin() as conn:
            file_id = rows_of.insert_file(conn, preview.file.file.sha256, preview.file.file.name,
                                          self.actor.username, now, len(frame), corrections,
                                          preview.correction_reason)
            sealed = rows_of.insert_outcomes(conn, frame.assign(file_id=file_id))
            digest = hashlib.sha256(frame[["application_id", "defaulted", "observed_on", "amount_lost"]]
                                    .to_csv(index=False).encode()).hexdigest()
            defaults = int(frame["defaulted"].sum())
            append_audit(conn, self.actor, "outcomes_loaded", "outcome_file", file_id, {
                "file": preview.file.file.name, "sha256": preview.file.file.sha256, "rows": len(frame),
                "defaults": defaults, "corrections": corrections, "outcomes_sha256": digest,
                **sealed, **rows_of.file_seal_ref(conn, file_id),
            }, at=now)
            for r in frame[frame["supersedes_id"].notna()].itertuples(index=False):
                append_audit(conn, self.actor, "outcome_corrected", "application", r.external_id, {
                    "application": int(r.application_id), "supersedes": int(r.supersedes_id),
                    "defaulted": bool(r.defaulted), "observed_on": r.observed_on,
                    "reason": preview.correction_reason}, at=now)
        return OutcomeLoad(file_id, preview.file.file.name, len(frame), defaults, corrections)

    def simulate(self, batch_ids: list[str], *, as_of: date, seed: int = 0,
                 downturn: float = 0.0) -> pd.DataFrame:
        """Outcomes of stored demo applications drawn from the generator's true probability
        (funded loans only), as an outcome file would carry them. For demos and tests."""
        self.require(Action.LOAD_OUTCOMES)
        with self.ctx.store.connect() as conn:
            perf = rows_of.performance_rows(conn, batch_ids=tuple(batch_ids))
            funded = perf[perf["status"] == Status.APPROVED]
            data = rows_of.stored_data(conn, funded["application_id"].tolist())
        if data.empty:
            raise InvalidInput("those batches have no funded application to draw outcomes for",
                               field="batch_ids")
        out = simulate_outcomes(data, as_of=as_of, seed=seed, downturn=downturn)
        out.insert(1, "batch_id", data["batch_id"].to_numpy())
        return as_laid_out(out, self.ctx.config.outcomes)

    # -- linking ---------------------------------------------------------------------------
    def _link(self, checked: OutcomeFile, reason: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        rows = checked.rows
        bad_rows = set(checked.issues["row_number"]) if not checked.issues.empty else set()
        with self.ctx.store.connect(snapshot=True) as conn:
            found = rows_of.link(conn, rows["application_id"].astype(str).tolist())
        records, issues = [], []
        for r in rows.itertuples(index=False):
            if r.row_number in bad_rows or not r.application_id:
                continue
            candidates = found.get(str(r.application_id), [])
            if r.batch_id:
                candidates = [c for c in candidates if c.batch_id == r.batch_id]
            problem = None
            if not candidates:
                problem = "unknown_application"
            elif len(candidates) > 1:
                problem = "ambiguous_application"
            elif candidates[0].status != Status.APPROVED:
                problem = "not_funded"
            elif candidates[0].current_outcome_id is not None and not reason:
                problem = "already_recorded"
            elif r.observed_on < date.fromisoformat(candidates[0].week_start):
                # a loan observed before it existed: a mistyped date or another loan's id
                issues.append(issue_row(int(r.row_number), int(r.line), str(r.application_id),
                                        checked.spec.observed_column, "before_application",
                                        r.observed_on.isoformat()))
                continue
            if problem is not None:
                value = candidates[0].status if problem == "not_funded" else str(r.application_id)
                issues.append(issue_row(int(r.row_number), int(r.line), str(r.application_id),
                                        checked.spec.id_column, problem, value))
                continue
            app = candidates[0]
            records.append({"application_id": app.id, "external_id": app.external_id, "data": app.data,
                            "amount": app.amount, "defaulted": bool(r.defaulted),
                            "observed_on": r.observed_on.isoformat(),
                            "amount_lost": _float(r.amount_lost), "days_past_due": _int(r.days_past_due),
                            "months_on_book": _months(app.week_start, r.observed_on),
                            "supersedes_id": app.current_outcome_id})
        linked = pd.DataFrame(records, columns=["application_id", "external_id", "data", "amount", "defaulted",
                                                "observed_on", "amount_lost", "days_past_due",
                                                "months_on_book", "supersedes_id"])
        linked["months_on_book"] = linked["months_on_book"].astype(float)
        linked["realised_profit"], linked["exposure"] = self._values(linked)
        return linked.drop(columns=["data"]), pd.DataFrame(issues, columns=ISSUE_COLUMNS)

    def _values(self, linked: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Realised profit (repaid or performing: the contractual margin; defaulted: minus the
        amount lost, or loss given default x amount) and exposure (months on book over term)."""
        if linked.empty:
            return np.array([], dtype=float), np.array([], dtype=float)
        config = self.ctx.config
        data = pd.DataFrame([json.loads(d) for d in linked["data"]])
        term_column = config.pricing.term_column
        for col in {config.amount_column, config.pricing.rate_column, term_column} - {None}:
            data[col] = pd.to_numeric(data[col], errors="coerce")
        values = LoanValues.from_frame(data, config)
        lost = linked["amount_lost"].to_numpy(dtype=float)
        loss = np.where(np.isfinite(lost), lost, values.loss)
        defaulted = linked["defaulted"].to_numpy(dtype=bool)
        if term_column:
            term = data[term_column].to_numpy(dtype=float)
        else:
            term = np.full(len(data), float(config.pricing.term_months or np.nan))
        mob = linked["months_on_book"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            exposure = np.clip(mob / term, 0.0, 1.0)
        exposure = np.where(np.isfinite(exposure), exposure, 1.0)  # no term: judged as matured
        # without pricing a repaid loan earns nothing known, so no loan's profit is known
        # either (the losses alone summed as 'realised profit' read as a loss-making book)
        profit = (np.where(defaulted, -loss, values.margin) if values.priced
                  else np.full(len(data), np.nan))
        return profit, exposure


def _months(week_start: str, observed: date) -> int:
    """Whole months (of 30 days) between the application's week and the observation."""
    return max((observed - date.fromisoformat(week_start)).days // 30, 0)


def _float(v: object) -> float | None:
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else float(v)  # type: ignore[arg-type]


def _int(v: object) -> int | None:
    f = _float(v)
    return None if f is None else int(f)


def as_laid_out(frame: pd.DataFrame, spec: OutcomeSpec) -> pd.DataFrame:
    """FinFlow's own outcome columns (``application_id``, ``defaulted`` yes/no ...) under the
    names and words the lender's outcome files use (``outcomes:`` in the config)."""
    names = dict(zip(OutcomeSpec().required + OutcomeSpec().optional,
                     spec.required + spec.optional, strict=True))
    words = {"yes": spec.defaulted_words[0], "no": spec.repaid_words[0]}
    return frame.assign(defaulted=frame["defaulted"].map(words)).rename(columns=names)
