"""Weekly batches: preview the quality gate, commit the same validated work, read results back.

A batch is recognised by its file's SHA-256: the same file again returns the stored
batch and stores nothing. A run that fails or is killed half-way rolls back: no partial
batch. Both engines (this process, a Dask cluster) go through :meth:`BatchService._store`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.exc import IntegrityError

from finflow_core.errors import BatchRejected, NotFound
from finflow_core.lending.intake.reader import BatchFile, Source, iter_chunks, open_source
from finflow_core.lending.intake.validation import (
    BatchValidator,
    ChunkResult,
    ignored_column_warnings,
)
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.pipeline.local import LocalEngine
from finflow_core.pipeline.run import BatchEngine, BatchSummary, Progress, run_batch
from finflow_core.services.access import Action
from finflow_core.services.audit import anchor_after_write
from finflow_core.services.models import champion_engine
from finflow_core.services.workbench import Service
from finflow_core.store import batch_queries as queries
from finflow_core.store import exports
from finflow_core.store.batch_queries import BatchRow
from finflow_core.store.batch_writer import AlreadyStored, StoreSink


@dataclass
class BatchPreview:
    """A file through the quality gate, not stored yet: what :meth:`BatchService.commit` stores."""

    batch: BatchFile
    chunks: list[ChunkResult] = field(default_factory=list)
    stored: BatchSummary | None = None  # the same file was stored before

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

    @property
    def warnings(self) -> list[str]:
        return ignored_column_warnings(self.batch)


class BatchService(Service):
    """Analysts upload batches; analysts and managers read them back."""

    # -- storing -----------------------------------------------------------------------------
    def preview(self, source: Source | BatchFile, *, name: str | None = None) -> BatchPreview:
        """Open and validate a file (nothing is stored); says if the same file is stored."""
        self.require(Action.UPLOAD_BATCH)
        batch = source if isinstance(source, BatchFile) else open_source(source, self.ctx.config, name=name)
        stored_id = queries.find_by_sha(self.ctx.store, batch.sha256)
        if stored_id is not None:
            return BatchPreview(batch, [], queries.stored_summary(self.ctx.store, stored_id))
        validator = BatchValidator(self.ctx.config)
        chunks = [validator.validate(raw) for raw in iter_chunks(batch, 10**9)]
        preview = BatchPreview(batch, chunks)
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
        batch = source if isinstance(source, BatchFile) else open_source(source, self.ctx.config, name=name)
        summary = self._store(batch, engine or LocalEngine(), progress=progress, scoring=scoring)
        if out_dir is not None:
            exports.export_batch(self.ctx.store, summary, Path(out_dir), self.ctx.config.model.reason_codes)
        return summary

    def _store(self, batch: BatchFile, engine: BatchEngine, *, progress: Progress | None = None,
               scoring: ScoringEngine | None = None) -> BatchSummary:
        """The one way a batch gets stored (weekly files and typed-in applications alike)."""
        if not (self.wb.can(Action.UPLOAD_BATCH) or self.wb.can(Action.SUBMIT_APPLICATION)):
            self.require(Action.UPLOAD_BATCH)  # raises, naming the role needed
        store = self.ctx.store
        summary = queries.stored_summary(store, batch.batch_id)
        if summary is not None:
            return summary
        scoring = scoring or champion_engine(self.ctx, explain=engine.name == "local")
        try:
            with store.begin() as conn:
                sink = StoreSink(conn, batch, scoring, self.actor.username, self.ctx.clock())
                summary = run_batch(batch, scoring, engine, sink, progress=progress)
            warning = anchor_after_write(self.ctx)  # the signed chain head, kept elsewhere
            if warning:
                summary.warnings.append(warning)
            return summary
        except AlreadyStored:
            pass
        except IntegrityError:
            if queries.stored_summary(store, batch.batch_id) is None:
                raise  # not a race on the same file: a real error
        summary = queries.stored_summary(store, batch.batch_id)  # another run stored it first
        assert summary is not None
        return summary

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


def summary_payload(summary: BatchSummary) -> dict[str, Any]:
    """The documented JSON summary: its keys first, then the rest."""
    d = summary.to_dict()
    keys = ("batch_id", "model_version", "rows_in", "rows_valid", "rows_quarantined", "bands",
            "automation_rate", "expected_profit", "drift")
    return {k: d[k] for k in keys} | {k: v for k, v in d.items() if k not in keys}
