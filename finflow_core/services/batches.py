"""Weekly batches: preview the quality gate, commit the same validated work, read results back.

A batch is recognised by its file's SHA-256: the same file again returns the stored
batch and stores nothing (and says which model and config made it, when, by whom, and how
to redo it). It is written in short transactions under an invisible loading state and
published at once: a run that fails is removed, one that is killed is removed by the next
run or start, so there is never a partial batch, and nobody is locked out meanwhile. A
manager may void a batch (:meth:`BatchService.void`); the same file can then be run again.
Both engines (this process, a Dask cluster) go through :meth:`BatchService._store`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from finflow_core.errors import BatchRejected, NotFound
from finflow_core.formatting import tallied
from finflow_core.lending.intake.reader import BatchFile, Source
from finflow_core.lending.intake.schema import RULES
from finflow_core.lending.intake.sources import iter_chunks, open_source
from finflow_core.lending.intake.validation import (
    BatchValidator,
    ChunkResult,
    ignored_column_warnings,
    merge_mappings,
)
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.lending.terms import BatchOrigin
from finflow_core.pipeline.experiment_scoring import (
    Challenger,
    ExperimentNeedsLocalRun,
    ExperimentScoring,
)
from finflow_core.pipeline.local import LocalEngine
from finflow_core.pipeline.run import (
    BatchEngine,
    BatchSummary,
    Progress,
    mapping_warning,
    run_batch,
)
from finflow_core.services.access import Action
from finflow_core.services.audit import anchor_after_write, anchored_write
from finflow_core.services.base import Service
from finflow_core.services.maintenance import stale_after
from finflow_core.services.scoring_engines import champion_engine, engine_for, load_version
from finflow_core.services.text_input import typed_text
from finflow_core.store import batch_loads, exports
from finflow_core.store import batch_queries as queries
from finflow_core.store import experiments as store_experiments
from finflow_core.store.batch_loads import AlreadyStored, VoidResult
from finflow_core.store.batch_queries import BatchRow
from finflow_core.store.batch_writer import StoreSink
from finflow_core.store.faults import StoreBusy

MAX_REASON = 2000


@dataclass
class BatchPreview:
    """A file through the quality gate, not stored yet: what :meth:`BatchService.commit` stores."""

    batch: BatchFile
    chunks: list[ChunkResult] = field(default_factory=list)
    stored: BatchSummary | None = None  # the same file was stored before
    config: Any = None  # the config it was checked against (for its warnings)

    @property
    def rows_valid(self) -> int:
        return sum(len(c.valid) for c in self.chunks)

    @property
    def rows_quarantined(self) -> int:
        return sum(len(c.quarantined) for c in self.chunks)

    @property
    def rows_in(self) -> int:
        return self.rows_valid + self.rows_quarantined

    @cached_property
    def quarantined(self) -> pd.DataFrame:
        return pd.concat([c.quarantined for c in self.chunks], ignore_index=True)

    @cached_property
    def issues(self) -> pd.DataFrame:
        return pd.concat([c.issues for c in self.chunks], ignore_index=True)

    def rule_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.issues["rule"].value_counts().items()}

    def rule_summary(self) -> str:
        """The failed rules in words with their counts: ``text is too long ×1, must be a number ×2``."""
        return tallied(self.rule_counts(), RULES)

    @cached_property
    def mapped(self) -> pd.DataFrame:
        """Kept rows' cells read as something else (column, value, mapped_to, count)."""
        return merge_mappings(c.mapped for c in self.chunks)

    @property
    def warnings(self) -> list[str]:
        """What the analyst should know before scoring: ignored columns, and cells that will
        be read as other than written (the same line the stored batch's summary carries)."""
        ignored = ignored_column_warnings(self.batch, self.config) if self.config else []
        return [*ignored, *mapping_warning(self.mapped)]

    @property
    def stored_message(self) -> str:
        """What the stored result is and how to redo it ("" if the file is new)."""
        return already_stored_text(self.stored) if self.stored is not None else ""


class BatchService(Service):
    """Analysts upload batches; analysts and managers read them back."""

    # -- storing -----------------------------------------------------------------------------
    def preview(self, source: Source | BatchFile, *, name: str | None = None) -> BatchPreview:
        """Open and validate a file (nothing is stored); says if the same file is stored."""
        self.require(Action.UPLOAD_BATCH)
        batch = source if isinstance(source, BatchFile) else open_source(source, self.ctx.config, name=name)
        stored_id = queries.find_by_sha(self.ctx.store, batch.sha256)
        if stored_id is not None:
            return BatchPreview(batch, [], queries.stored_summary(self.ctx.store, stored_id),
                                config=self.ctx.config)
        validator = BatchValidator(self.ctx.config)
        chunks = [validator.validate(raw) for raw in iter_chunks(batch, 10**9)]
        preview = BatchPreview(batch, chunks, config=self.ctx.config)
        if preview.rows_in == 0:
            raise BatchRejected(f"{batch.name}: the file has a header but no applications", reason="no_rows")
        return preview

    def commit(self, preview: BatchPreview, *, progress: Progress | None = None) -> BatchSummary:
        """Score and store a previewed batch, from its validated rows (no second validation)."""
        self.require(Action.UPLOAD_BATCH)
        if preview.stored is not None:
            return preview.stored
        return self._store(preview.batch, LocalEngine(validated=preview.chunks), progress=progress)

    def run(self, source: Source | BatchFile, *, name: str | None = None, engine: BatchEngine | None = None,
            progress: Progress | None = None, out_dir: Path | None = None,
            scoring: ScoringEngine | None = None) -> BatchSummary:
        """Validate, score, route, explain, measure drift and store a batch, streaming it.

        ``engine`` is where the work happens (default: this process, 50,000 rows a chunk).
        """
        self.require(Action.UPLOAD_BATCH)
        if out_dir is not None:
            exports.check_out_dir(Path(out_dir))  # before anything is read or stored
        batch = source if isinstance(source, BatchFile) else open_source(source, self.ctx.config, name=name)
        summary = self._store(batch, engine or LocalEngine(), progress=progress, scoring=scoring)
        if out_dir is not None:
            exports.export_batch(self.ctx.store, summary, Path(out_dir), self.ctx.config.model.reason_codes)
        return summary

    def _store(self, batch: BatchFile, engine: BatchEngine, *, progress: Progress | None = None,
               scoring: ScoringEngine | None = None,
               origin: BatchOrigin | str = BatchOrigin.FILE) -> BatchSummary:
        """The one way a batch gets stored (weekly files and typed-in applications alike).

        ``origin`` form: a typed-in application, written and published in one transaction,
        its drift measured over its week (see :mod:`finflow_core.store.period_drift`).
        """
        if not (self.wb.can(Action.UPLOAD_BATCH) or self.wb.can(Action.SUBMIT_APPLICATION)):
            self.require(Action.UPLOAD_BATCH)  # raises, naming the role needed
        store = self.ctx.store
        origin = BatchOrigin(origin)
        stored = self._stored_version(batch)
        if stored is not None:
            return stored
        if origin == BatchOrigin.FILE:
            # a run killed earlier leaves nothing behind
            batch_loads.recover_abandoned(store, stale=stale_after(self.ctx.config))
        scoring = scoring or champion_engine(self.ctx, explain=engine.name == "local")
        scoring = self._under_experiments(scoring, engine)
        try:
            sink = StoreSink(store, batch, scoring, self.actor.username, self.ctx.clock(),
                             origin=origin, one_transaction=origin == BatchOrigin.FORM)
        except AlreadyStored as exc:  # another run stored it first
            found = queries.stored_summary(store, exc.batch_id)
            assert found is not None
            return found
        try:
            summary = run_batch(batch, scoring, engine, sink, progress=progress)
        except BaseException as exc:
            sink.abort(store_busy=isinstance(exc, StoreBusy))
            raise
        warning = anchor_after_write(self.ctx)  # the signed chain head, kept elsewhere
        if warning:
            summary.warnings.append(warning)
        return summary

    def _under_experiments(self, scoring: ScoringEngine, engine: BatchEngine) -> ScoringEngine:
        """The champion's engine, or (a split or shadow test running) the champion with its
        challengers beside it (:class:`ExperimentScoring`); looked up once per batch.

        The challenger scores with the band edges recorded when the test started (those its
        ``experiment_started`` entry names). A Dask run cannot route by arm yet: refused.
        """
        with self.ctx.store.connect() as conn:
            running = {e.kind: e for e in store_experiments.running(conn, checked=True)}
        if not running:
            return scoring
        if engine.name != "local":
            names = ", ".join(f"{e.kind} test {e.id} ({e.challenger_version})" for e in running.values())
            raise ExperimentNeedsLocalRun(
                f"a champion-challenger test is running ({names}) and a {engine.name} run cannot "
                "route applications by arm: run the batch locally (without --dask), or have a "
                "manager stop the test first (`finflow experiments stop ID --reason ...`)",
                engine=engine.name, experiments=[e.id for e in running.values()])
        challengers: dict[str, Challenger] = {}
        for kind, e in running.items():
            bundle = load_version(self.ctx, e.challenger_version)
            strategy = bundle.strategy.with_edges(e.low_edge, e.high_edge)
            explain = kind == "split" and getattr(scoring, "explainer", None) is not None
            challengers[kind] = Challenger(e.id, kind, e.share, e.seed,
                                           engine_for(self.ctx, bundle, strategy, explain=explain))
        return ExperimentScoring(scoring, split=challengers.get("split"),  # type: ignore[return-value]
                                 shadow=challengers.get("shadow"))

    def _stored_version(self, batch: BatchFile) -> BatchSummary | None:
        stored_id = queries.find_by_sha(self.ctx.store, batch.sha256)
        return None if stored_id is None else queries.stored_summary(self.ctx.store, stored_id)

    # -- voiding -------------------------------------------------------------------------------
    def void(self, batch_id: str, reason: str) -> VoidResult:
        """Take a stored batch out of the queue and the portfolio, with a reason (audited).

        Every row stays stored (history, audit trail, exports); the same file can then be run
        again and is stored as a new batch.
        """
        self.require(Action.VOID_BATCH)
        reason = typed_text(reason, "reason", limit=MAX_REASON,
                            needed="voiding a batch needs a reason (what was wrong with it)")
        now = self.ctx.clock()
        monitoring = self.ctx.config.monitoring
        with anchored_write(self.ctx) as conn:  # then anchored: it changes what the desk shows
            result = batch_loads.void(conn, batch_id, reason, self.actor.username, now)
            if result.origin == BatchOrigin.FORM:
                from finflow_core.services.scoring_engines import load_version
                from finflow_core.store.period_drift import recount_period
                from finflow_core.store.tables import iso_utc

                baseline = load_version(self.ctx, result.model_version).baseline
                recount_period(conn, baseline, result.model_version, result.week_start,
                               min_rows=monitoring.min_rows, confidence=monitoring.confidence,
                               at=iso_utc(now))
        return result

    # -- reading back ------------------------------------------------------------------------
    def list(self, limit: int = 100) -> list[BatchRow]:
        self.require(Action.VIEW_BATCHES)
        return queries.list_batches(self.ctx.store, limit)

    def summary(self, batch_id: str) -> BatchSummary:
        self.require(Action.VIEW_BATCHES)
        found = queries.stored_summary(self.ctx.store, batch_id)
        if found is None:
            raise NotFound(f"no stored batch {batch_id!r}: see `finflow batches list`", batch_id=batch_id)
        return found

    def decisions(self, batch_id: str) -> pd.DataFrame:
        self.summary(batch_id)
        return queries.decisions_frame(self.ctx.store, batch_id, self.ctx.config.model.reason_codes)

    def quarantine(self, batch_id: str) -> pd.DataFrame:
        self.summary(batch_id)
        return queries.quarantine_frame(self.ctx.store, batch_id)

    def issues(self, batch_id: str) -> pd.DataFrame:
        self.summary(batch_id)
        return queries.issues_frame(self.ctx.store, batch_id)

    def export(self, batch_id: str, out_dir: Path) -> dict[str, Path]:
        """decisions.csv, quarantine.csv, quarantine_issues.csv and summary.json, from the store."""
        summary = self.summary(batch_id)
        return exports.export_batch(self.ctx.store, summary, Path(out_dir), self.ctx.config.model.reason_codes)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """A frame as spreadsheet-safe CSV bytes (for downloads)."""
    return exports.csv_bytes(frame)


def already_stored_text(summary: BatchSummary) -> str:
    """Which model and config made a stored batch, when and by whom, and how to redo it."""
    when = summary.uploaded_at[:16].replace("T", " ")
    config = (summary.config_sha256 or "")[:12] or "unknown"
    text = (f"{summary.file_name} is stored already as batch {summary.batch_id}: scored by model "
            f"{summary.model_version} with config {config}… on {when} UTC by "
            f"{summary.uploaded_by or 'unknown'}; nothing was added.")
    if summary.state == "voided":
        return text + f" That batch was voided by {summary.voided_by}."
    return text + (f" To store it again (after fixing the config or promoting another model), a "
                   f"manager voids it first: `finflow batches void {summary.batch_id} --reason "
                   "\"...\"`, then run the file again.")


def summary_payload(summary: BatchSummary) -> dict[str, Any]:
    """The documented JSON summary: its keys first, then the rest."""
    d = summary.to_dict()
    keys = ("batch_id", "model_version", "rows_in", "rows_valid", "rows_quarantined", "bands",
            "automation_rate", "expected_profit", "drift")
    return {k: d[k] for k in keys} | {k: v for k, v in d.items() if k not in keys}
