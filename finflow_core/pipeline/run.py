"""The shell of every batch run: parts in, totals and drift counts added up, one summary out.

Engines differ only in where parts are made (:class:`BatchEngine`); what happens to each
part (:class:`BatchSink`, the store) and how the totals, drift and summary are built is
written once, here.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from finflow_core.errors import BatchRejected
from finflow_core.lending.drift import DriftReport
from finflow_core.lending.intake.reader import BatchFile
from finflow_core.lending.intake.validation import (
    ChunkResult,
    ignored_column_warnings,
    mapping_lines,
    merge_mappings,
    no_mappings,
)
from finflow_core.lending.scoring import ScoringEngine
from finflow_core.lending.terms import BANDS, Band

Progress = Callable[[int, int], None]  # (rows done, rows expected)


@dataclass
class Part:
    """One piece of a batch, validated and scored: what an engine yields, in file order."""

    chunk: ChunkResult
    scored: pd.DataFrame
    drift: dict[str, np.ndarray]
    timings: dict[str, float] = field(default_factory=dict)


class BatchEngine(Protocol):
    """Where parts are made: this process, or a cluster."""

    name: str

    def parts(self, batch: BatchFile, scoring: ScoringEngine) -> Iterator[Part]: ...


class BatchSink(Protocol):
    """Where a run's results go, part by part; ``batch_id`` is the id it stores them under.

    A sink whose ``background`` attribute is true has its ``write_chunk`` called from a
    writer thread (one part at a time, in order), so storing part k overlaps making part
    k + 1; ``finish`` is always called from the caller's thread, after the last write.
    """

    batch_id: str

    def write_chunk(self, chunk: ChunkResult, scored: pd.DataFrame) -> None: ...

    def finish(self, summary: BatchSummary, drift: DriftReport) -> None: ...


@dataclass
class BatchSummary:
    """What a batch run reports; the first keys are the documented JSON summary."""

    batch_id: str
    model_version: str
    rows_in: int
    rows_valid: int
    rows_quarantined: int
    bands: dict[str, int]
    automation_rate: float
    expected_profit: float | None  # None: nothing priced (``priced`` False)
    drift: dict[str, Any]
    file_name: str = ""
    sha256: str = ""
    roi: float | None = 0.0
    amount_requested: float = 0.0
    amount_auto_approved: float = 0.0
    issues_by_rule: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    already_stored: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    priced: bool = True
    #: kept rows' cells read as something else: [{column, value, mapped_to, count}]
    value_mappings: list[dict[str, Any]] = field(default_factory=list)
    origin: str = "file"
    state: str = "published"
    uploaded_by: str = ""
    uploaded_at: str = ""
    config_sha256: str = ""
    voided_at: str | None = None
    voided_by: str | None = None
    void_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Totals:
    """Running totals of a batch, added part by part."""

    rows_valid: int = 0
    rows_quarantined: int = 0
    bands: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BANDS, 0))
    profit: float = 0.0
    requested: float = 0.0
    auto_approved: float = 0.0
    lent_expected: float = 0.0
    issues: dict[str, int] = field(default_factory=dict)
    mapped: pd.DataFrame = field(default_factory=no_mappings)
    priced: bool = False

    @property
    def rows_in(self) -> int:
        return self.rows_valid + self.rows_quarantined

    def add(self, chunk: ChunkResult, scored: pd.DataFrame, review_good_decline: float) -> None:
        self.rows_valid += len(chunk.valid)
        self.rows_quarantined += len(chunk.quarantined)
        counts = scored["band"].value_counts()
        for b in BANDS:
            self.bands[b] += int(counts.get(b, 0))
        if self.priced:  # an unpriced strategy's profits are unknown: never added up as 0
            self.profit += float(pd.to_numeric(scored["expected_profit"], errors="coerce").sum())
        amount = scored["loan_amount"].to_numpy(dtype=float)
        band = scored["band"].to_numpy()
        low, medium = amount[band == Band.LOW].sum(), amount[band == Band.MEDIUM].sum()
        self.requested += float(amount.sum())
        self.auto_approved += float(low)
        self.lent_expected += float(low) + (1 - review_good_decline) * float(medium)
        for rule, n in chunk.issues["rule"].value_counts().items():
            self.issues[str(rule)] = self.issues.get(str(rule), 0) + int(n)
        if len(chunk.mapped):
            self.mapped = merge_mappings([self.mapped, chunk.mapped])


def add_timing(timings: dict[str, float], stage: str, started: float) -> None:
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - started


class _Writer:
    """Calls a sink's ``write_chunk`` in a background thread, at most ``depth`` parts waiting
    (so memory stays bounded); the first error stops it and is raised to the caller."""

    def __init__(self, sink: BatchSink, timings: dict[str, float], depth: int = 1) -> None:
        self.sink, self.timings = sink, timings
        self.queue: queue.Queue[tuple[ChunkResult, pd.DataFrame] | None] = queue.Queue(depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="finflow-store-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue  # failed: drain until told to stop
            t = time.perf_counter()
            try:
                self.sink.write_chunk(*item)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self.error = exc
            add_timing(self.timings, "store", t)

    def put(self, chunk: ChunkResult, scored: pd.DataFrame) -> None:
        self._raise()
        t = time.perf_counter()
        self.queue.put((chunk, scored))
        add_timing(self.timings, "store_wait", t)

    def close(self) -> None:
        """Wait for every part to be written; raise the writer's error, if any."""
        t = time.perf_counter()
        self.queue.put(None)
        self.thread.join()
        add_timing(self.timings, "store_wait", t)
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


def run_batch(batch: BatchFile, scoring: ScoringEngine, engine: BatchEngine, sink: BatchSink, *,
              progress: Progress | None = None) -> BatchSummary:
    """Run ``batch`` through ``engine`` into ``sink`` and return its summary."""
    review_good_decline = scoring.config.economics.review_good_decline
    timings: dict[str, float] = {}
    drift_counts: dict[str, np.ndarray] = {}
    totals = Totals(priced=scoring.config.pricing.priced)
    writer = _Writer(sink, timings) if getattr(sink, "background", False) else None
    parts = engine.parts(batch, scoring)
    try:
        while True:
            t = time.perf_counter()
            part = next(parts, None)
            add_timing(timings, "wait", t)
            if part is None:
                break
            for k, v in part.timings.items():
                timings[k] = timings.get(k, 0.0) + v
            for k, counts in part.drift.items():
                drift_counts[k] = drift_counts[k] + counts if k in drift_counts else counts
            if part.chunk.rows_in:
                if writer is not None:
                    writer.put(part.chunk, part.scored)
                else:
                    t = time.perf_counter()
                    sink.write_chunk(part.chunk, part.scored)
                    add_timing(timings, "store", t)
            totals.add(part.chunk, part.scored, review_good_decline)
            if progress is not None:
                progress(totals.rows_in, max(batch.expected_rows, totals.rows_in))
    finally:
        if writer is not None:
            _close_writer(writer)
    summary = _summary(batch, scoring, totals, drift_counts, timings, sink)
    summary.timings.update(getattr(engine, "stats", {}))  # e.g. the Dask engine's partitions
    return summary


def _close_writer(writer: _Writer) -> None:
    """Join the writer; its error wins unless the run itself is already failing."""
    import sys

    failing = sys.exc_info()[1] is not None
    try:
        writer.close()
    except BaseException:
        if not failing:
            raise


def _summary(batch: BatchFile, scoring: ScoringEngine, totals: Totals,
             drift_counts: dict[str, np.ndarray], timings: dict[str, float],
             sink: BatchSink) -> BatchSummary:
    if totals.rows_in == 0:
        raise BatchRejected(f"{batch.name}: the file has a header but no applications", reason="no_rows")
    baseline = scoring.bundle.baseline
    if not drift_counts:  # every row quarantined: nothing to compare
        drift_counts = {k: np.zeros(s.n_bins, dtype=np.int64) for k, s in baseline.specs.items()}
    t = time.perf_counter()
    monitoring = scoring.config.monitoring
    drift = baseline.report(drift_counts, min_rows=monitoring.min_rows,
                            confidence=monitoring.confidence)
    add_timing(timings, "drift", t)
    valid = totals.rows_valid
    priced = totals.priced
    mapped = totals.mapped
    summary = BatchSummary(
        batch_id=getattr(sink, "batch_id", batch.batch_id),
        model_version=scoring.bundle.version,
        rows_in=totals.rows_in,
        rows_valid=valid,
        rows_quarantined=totals.rows_quarantined,
        bands=dict(totals.bands),
        automation_rate=round((totals.bands[Band.LOW] + totals.bands[Band.HIGH]) / valid, 4) if valid else 0.0,
        expected_profit=round(totals.profit, 2) if priced else None,
        drift=drift.summary(),
        file_name=batch.name,
        sha256=batch.sha256,
        roi=(round(totals.profit / totals.lent_expected, 4) if totals.lent_expected else 0.0)
        if priced else None,
        amount_requested=round(totals.requested, 2),
        amount_auto_approved=round(totals.auto_approved, 2),
        issues_by_rule=totals.issues,
        warnings=[*ignored_column_warnings(batch, scoring.config), *mapping_warning(mapped)],
        priced=priced,
        value_mappings=[{"column": str(r.column), "value": str(r.value), "mapped_to": str(r.mapped_to),
                         "count": int(r.count)} for r in mapped.itertuples(index=False)],
        config_sha256=scoring.config.sha256,
    )
    t = time.perf_counter()
    sink.finish(summary, drift)
    add_timing(timings, "publish", t)
    summary.timings = {k: round(v, 4) for k, v in timings.items()}
    return summary


def mapping_warning(mapped: pd.DataFrame, shown: int = 5) -> list[str]:
    """One line about kept rows' cells read as other than written: undeclared codes that a
    column's policy keeps (as missing or 'other') and declared missing-value texts."""
    if not len(mapped):
        return []
    lines = mapping_lines(mapped)
    more = f"; and {len(lines) - shown} more (see value_mappings)" if len(lines) > shown else ""
    return [f"{int(mapped['count'].sum()):,} cell(s) were kept and read as other than written "
            f"(undeclared codes by their column's policy, missing-value texts as missing): "
            f"{'; '.join(lines[:shown])}{more}"]
